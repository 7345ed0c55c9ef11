package io.longmem.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * AdamW (decoupled weight decay, on matrices only) with global gradient-norm clipping, over named
 * parameters whose gradients DJL's autograd filled. Its moments are state a checkpoint keeps.
 */
public final class AdamW {
  private final double beta1;
  private final double beta2;
  private final double eps;
  private final double weightDecay;
  private final double clip;
  private final Map<String, NDArray> m = new LinkedHashMap<>();
  private final Map<String, NDArray> v = new LinkedHashMap<>();
  private long t;

  public AdamW(Map<String, NDArray> params, NDManager manager, double beta1, double beta2, double eps,
      double weightDecay, double clip) {
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.clip = clip;
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      m.put(e.getKey(), manager.zeros(e.getValue().getShape(), e.getValue().getDataType()));
      v.put(e.getKey(), manager.zeros(e.getValue().getShape(), e.getValue().getDataType()));
    }
  }

  /** Steps taken (what bias correction uses). */
  public long steps() {
    return t;
  }

  /** First and second moments by parameter name ("m." / "v." + name): what a checkpoint saves. */
  public Map<String, NDArray> state() {
    Map<String, NDArray> s = new LinkedHashMap<>();
    m.forEach((k, a) -> s.put("m." + k, a));
    v.forEach((k, a) -> s.put("v." + k, a));
    return s;
  }

  /** Restores moments (from {@link #state}'s names) and the step count. */
  public void restore(Map<String, float[]> state, long steps) {
    for (Map.Entry<String, NDArray> e : state().entrySet()) {
      float[] values = state.get(e.getKey());
      if (values == null || values.length != e.getValue().size()) {
        throw new io.longmem.io.InputException("optimizer state lacks " + e.getKey() + " or has another shape");
      }
      NDArray a = e.getValue();
      try (NDArray f = a.getManager().create(values, a.getShape())) {
        NDArray c = a.getDataType() == f.getDataType() ? f : f.toType(a.getDataType(), false);
        a.set(c.toByteBuffer());
        if (c != f) {
          c.close();
        }
      }
    }
    this.t = steps;
  }

  /**
   * One update with learning rate {@code lr}; gradients are clipped to a global norm of
   * {@code clip} (0: no clipping) and zeroed after. Returns the gradient norm before clipping.
   */
  public double step(Map<String, NDArray> params, double lr) {
    t++;
    double sq = 0;
    Map<String, NDArray> grads = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      NDArray g = e.getValue().getGradient();
      grads.put(e.getKey(), g);
      try (NDArray s = g.square().sum()) {
        sq += s.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).getDouble();
      }
    }
    double norm = Math.sqrt(sq);
    double scale = clip > 0 && norm > clip ? clip / norm : 1.0;
    double c1 = 1 - Math.pow(beta1, t);
    double c2 = 1 - Math.pow(beta2, t);
    for (Map.Entry<String, NDArray> e : params.entrySet()) {
      String n = e.getKey();
      NDArray p = e.getValue();
      NDArray g = grads.get(n);
      try (NDArray gs = g.mul(scale)) {
        m.get(n).muli(beta1).addi(gs.mul(1 - beta1));
        v.get(n).muli(beta2).addi(gs.square().muli(1 - beta2));
      }
      if (weightDecay > 0 && p.getShape().dimension() == 2 && !n.endsWith("embed_tokens.weight")) {
        p.muli(1 - lr * weightDecay);
      }
      NDArray update = m.get(n).div(c1).divi(v.get(n).div(c2).sqrt().addi(eps)).muli(lr);
      p.subi(update);
      update.close();
      g.subi(g);
      g.close();
    }
    return norm;
  }
}
