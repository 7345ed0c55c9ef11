"""Prefill tokens/s and decode ms/token of the published LongLLaMA code on a random model shaped
as `bin/longmem bench model`'s (see bin/bench-reference), float32 and bfloat16 in one run."""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transformers_stub  # noqa: E402

transformers_stub.install()
import torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkout", help="a checkout of the reference's public repository")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=3200)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--intermediate", type=int, default=8640)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--window", type=int, default=2048, help="max_position_embeddings")
    p.add_argument("--last-context-length", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtypes", default="float32,bfloat16")
    a = p.parse_args()
    sys.path.insert(0, a.checkout)
    from src.configuration_longllama import LongLlamaConfig
    from src.modeling_longllama import LongLlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    mem_layers = sorted({min(1, a.layers - 1), min(2, a.layers - 1)})
    config = LongLlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                             num_hidden_layers=a.layers, num_attention_heads=a.heads,
                             max_position_embeddings=a.window, last_context_length=a.last_context_length,
                             mem_layers=mem_layers, mem_dtype="bfloat16", initializer_range=0.02)
    g = torch.Generator().manual_seed(7)
    prompt = torch.randint(3, a.vocab, (1, a.tokens), generator=g)
    print(f"reference bench: torch {torch.__version__} threads={torch.get_num_threads()} layers={a.layers} "
          f"hidden={a.hidden} heads={a.heads} intermediate={a.intermediate} vocab={a.vocab} window={a.window} "
          f"last_context_length={a.last_context_length} tokens={a.tokens} memory layers {mem_layers}")
    model = LongLlamaForCausalLM(config).eval()
    for name in a.dtypes.split(","):
        model = model.to(getattr(torch, name))
        with torch.no_grad():
            model(input_ids=prompt[:, :64], use_cache=True, last_context_length=a.last_context_length)  # warm-up
            t = time.perf_counter()
            out = model(input_ids=prompt, use_cache=True, last_context_length=a.last_context_length)
            prefill = time.perf_counter() - t
            steps = []
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(a.decode_tokens):
                t = time.perf_counter()
                out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True,
                            last_context_length=a.last_context_length)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                steps.append(time.perf_counter() - t)
        print(f"reference {name} prefill: {a.tokens} tokens in {prefill:.2f} s = {a.tokens / prefill:.1f} tokens/s")
        print(f"reference {name} decode: {a.decode_tokens} tokens, median {statistics.median(steps) * 1000:.1f} "
              f"ms/token, mean {statistics.mean(steps) * 1000:.1f} ms/token")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
