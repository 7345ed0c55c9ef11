#!/usr/bin/python3
"""Runs the published LongLLaMA code (a checkout of its public repository, given as the first
argument) on the tiny-a conformance checkpoint in float32 and in bfloat16 (model.to(bfloat16), as a
user of the reference would) and writes, into the fixture directory (second argument):

  torch_bf16_prompt_logits_nocache.npy  the bfloat16 run's logits on the conformance prompt
                                        (no cache, last_context_length from config.json)
  torch_bf16_compute.json               its greedy ids (24 steps, cache, last_context_length 20)
                                        and the bfloat16 run's max abs distance from float32

The float32 run must reproduce the committed f32_prompt_logits_nocache.npy and the f32 greedy ids of
cases.json (checked here): that is what makes the bfloat16 numbers comparable with ours.
Usage: bin/reference/bf16_fixture.py REF_CHECKOUT model-worker/src/test/resources/fixtures/tiny-a
Needs Debian's python3-torch and python3-numpy; transformers is replaced by transformers_stub.py.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transformers_stub  # noqa: E402

transformers_stub.install()
import numpy as np  # noqa: E402
import torch  # noqa: E402


def load(ref, fixtures, dtype):
    sys.path.insert(0, ref)
    from src.configuration_longllama import LongLlamaConfig
    from src.modeling_longllama import LongLlamaForCausalLM

    with open(os.path.join(fixtures, "model-bin", "config.json")) as f:
        cfg = json.load(f)
    cfg["mem_dtype"] = "float32"  # the f32 checks: memory as the compute produces it
    for k in ("architectures", "model_type", "torch_dtype"):
        cfg.pop(k, None)
    model = LongLlamaForCausalLM(LongLlamaConfig(**cfg))
    with open(os.path.join(fixtures, "model-bin", "pytorch_model.bin.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    state = {}
    for s in shards:
        state.update(torch.load(os.path.join(fixtures, "model-bin", s), map_location="cpu"))
    model.load_state_dict(state, strict=False)
    model.eval()
    return model.to(dtype), cfg


def prompt_logits(model, ids, last_context):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False, last_context_length=last_context)
    return out.logits[0].float().numpy()


def greedy(model, ids, steps, last_context):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True, last_context_length=last_context)
        chosen = []
        for _ in range(steps):
            nxt = int(out.logits[0, -1].float().argmax())
            chosen.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True,
                        last_context_length=last_context)
    return chosen


def main():
    ref, fixtures = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    with open(os.path.join(fixtures, "cases.json")) as f:
        cases = json.load(f)
    prompt = cases["book_ids"] + cases["question_ids"]
    expected_ids = cases["checks"]["f32"]["greedy_ids"]
    results = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model, cfg = load(ref, fixtures, dtype)
        results[name] = (prompt_logits(model, prompt, cfg["last_context_length"]),
                         greedy(model, prompt, len(expected_ids), 20))
    committed = np.load(os.path.join(fixtures, "f32_prompt_logits_nocache.npy"))
    f32_check = float(np.abs(results["float32"][0] - committed).max())
    if f32_check > 1e-4 or results["float32"][1] != expected_ids:
        sys.exit(f"the float32 run does not reproduce the committed fixtures (max abs {f32_check}, "
                 f"ids {results['float32'][1]}): wrong checkout or protocol")
    bf16_logits, bf16_ids = results["bfloat16"]
    np.save(os.path.join(fixtures, "torch_bf16_prompt_logits_nocache.npy"), bf16_logits.astype(np.float32))
    summary = {
        "torch": torch.__version__,
        "greedy_ids": bf16_ids,
        "greedy_ids_matching_f32": sum(a == b for a, b in zip(bf16_ids, expected_ids)),
        "prompt_logits_max_abs_from_f32": float(np.abs(bf16_logits - committed).max()),
        "f32_run_max_abs_from_committed": f32_check,
    }
    with open(os.path.join(fixtures, "torch_bf16_compute.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
