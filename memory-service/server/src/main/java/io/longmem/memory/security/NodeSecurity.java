package io.longmem.memory.security;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsChannelCredentials;
import io.grpc.TlsServerCredentials;
import io.longmem.io.InputException;
import io.longmem.memory.api.BearerToken;
import io.longmem.memory.api.ClientSecurity;
import java.io.IOException;
import java.nio.file.Path;

/**
 * A node's TLS and tokens, read from the files its configuration names: what it serves with
 * ({@link #serverCredentials}, {@link #tokens}) and what it calls other nodes with ({@link
 * #peerCredentials}, {@link #nodeToken}). Every file is checked here, so a bad one fails the start
 * with one line naming its key and path.
 */
public final class NodeSecurity {
  /** The environment variable that may hold the node token (when auth.node_token_file is not set). */
  public static final String NODE_TOKEN_ENV = "LONGMEM_NODE_TOKEN";

  private final ServerCredentials server;
  private final TokenStore tokens;
  private final ChannelCredentials peers;
  private final BearerToken nodeToken;

  /** The files (null: not set), already resolved; {@code envToken} is LONGMEM_NODE_TOKEN's value. */
  public record Sources(Path certChain, Path privateKey, Path clientCa, Path peerCa, Path tokensFile,
      Path nodeTokenFile, String envToken) {}

  private NodeSecurity(ServerCredentials server, TokenStore tokens, ChannelCredentials peers, BearerToken nodeToken) {
    this.server = server;
    this.tokens = tokens;
    this.peers = peers;
    this.nodeToken = nodeToken;
  }

  public static NodeSecurity of(Sources f) {
    ServerCredentials server = null;
    if (f.certChain() != null) {
      try {
        KeyPairCheck.check(certificates(f.certChain(), "tls.cert_chain"), readable(f.privateKey(), "tls.private_key"));
        TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder()
            .keyManager(f.certChain().toFile(), f.privateKey().toFile());
        if (f.clientCa() != null) {
          b.trustManager(certificates(f.clientCa(), "tls.client_ca").toFile())
              .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
        }
        server = b.build();
      } catch (IOException e) {
        throw new InputException("tls: cannot read " + e.getMessage());
      }
    }
    TokenStore tokens = f.tokensFile() != null ? TokenStore.load(f.tokensFile(), "auth.tokens_file") : null;
    ChannelCredentials peers = InsecureChannelCredentials.create();
    if (f.peerCa() != null) {
      try {
        TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder()
            .trustManager(certificates(f.peerCa(), "tls.peer_ca").toFile());
        if (f.certChain() != null) { // this node's own certificate, for peers that want mutual TLS
          b.keyManager(f.certChain().toFile(), f.privateKey().toFile());
        }
        peers = b.build();
      } catch (IOException e) {
        throw new InputException("tls: cannot read " + e.getMessage());
      }
    }
    BearerToken nodeToken = null;
    if (f.nodeTokenFile() != null) {
      nodeToken = BearerToken.read(f.nodeTokenFile(), "auth.node_token_file");
    } else if (f.envToken() != null && !f.envToken().isEmpty()) {
      nodeToken = BearerToken.of(f.envToken().strip(), NODE_TOKEN_ENV);
    }
    return new NodeSecurity(server, tokens, peers, nodeToken);
  }

  /** A file that is there, readable, and holds at least one PEM certificate. */
  private static Path certificates(Path p, String key) {
    return ClientSecurity.certificates(p, key);
  }

  private static Path readable(Path p, String key) {
    return ClientSecurity.readable(p, key);
  }

  /** TLS for the server, or null (plaintext). */
  public ServerCredentials serverCredentials() {
    return server;
  }

  /** The tokens the node accepts, or null: authentication off. */
  public TokenStore tokens() {
    return tokens;
  }

  /** How this node's channels to other nodes are secured (plaintext without tls.peer_ca). */
  public ChannelCredentials peerCredentials() {
    return peers;
  }

  /** Whether calls to other nodes use TLS. */
  public boolean peersUseTls() {
    return !(peers instanceof InsecureChannelCredentials);
  }

  /** The token this node sends other nodes, or null. */
  public BearerToken nodeToken() {
    return nodeToken;
  }
}
