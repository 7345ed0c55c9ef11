package io.longmem.memory.api;

import io.grpc.Attributes;
import io.grpc.EquivalentAddressGroup;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;

/**
 * A fixed list of node addresses as a gRPC name resolver, so that one channel spreads over and
 * fails over between several nodes with gRPC's own load balancing (pick_first, round_robin) and
 * retries. Host names are looked up at each resolution (a restarted node may move).
 */
final class StaticAddresses extends NameResolverProvider {
  static final String SCHEME = "longmem-static";
  private final List<InetSocketAddress> addresses;

  StaticAddresses(List<InetSocketAddress> addresses) {
    this.addresses = List.copyOf(addresses);
  }

  /** A resolver factory that knows this one list, for a channel's target {@code longmem-static:///nodes}. */
  NameResolver.Factory factory() {
    NameResolverRegistry registry = new NameResolverRegistry();
    registry.register(this);
    return registry.asFactory();
  }

  @Override
  protected boolean isAvailable() {
    return true;
  }

  @Override
  protected int priority() {
    return 5;
  }

  @Override
  public String getDefaultScheme() {
    return SCHEME;
  }

  @Override
  public NameResolver newNameResolver(URI target, NameResolver.Args args) {
    if (!SCHEME.equals(target.getScheme())) {
      return null;
    }
    return new NameResolver() {
      private Listener2 listener;

      @Override
      public String getServiceAuthority() {
        return addresses.get(0).getHostString() + ":" + addresses.get(0).getPort();
      }

      @Override
      public void start(Listener2 l) {
        listener = l;
        resolve();
      }

      @Override
      public void refresh() {
        resolve();
      }

      private void resolve() {
        List<EquivalentAddressGroup> groups = new ArrayList<>();
        for (InetSocketAddress a : addresses) {
          // the authority of each node is its own host: a TLS certificate is checked against it
          groups.add(new EquivalentAddressGroup(new InetSocketAddress(a.getHostString(), a.getPort()),
              Attributes.newBuilder().set(EquivalentAddressGroup.ATTR_AUTHORITY_OVERRIDE,
                  a.getHostString() + ":" + a.getPort()).build()));
        }
        listener.onResult(ResolutionResult.newBuilder().setAddresses(groups).build());
      }

      @Override
      public void shutdown() {}
    };
  }
}
