"""PacGAN's 2-D ring and grid protocol for every loss, beside PacGAN's published Table 1.

Each loss trains through ``bayesgan train`` (the command's measured defaults: MLP generator and
critic 2-128x3, batch 256, Adam lr 2e-3 with betas (0.5, 0.999), linear decay over the last half)
for ``--steps`` SVI steps, far fewer than PacGAN's 400,000 iterations, and is scored on 2,500
samples by the PacGAN metric (modes with a sample within 3 standard deviations, high-quality
fraction, KL of the mode histogram to uniform). Mean over ``--seeds``.

    python benchmarks/mode_coverage.py --steps 6000 --seeds 0 1 2
"""

import argparse
import json
import statistics

from bayesgan import cli, metrics

PACGAN = {  # PacGAN Table 1 (mean over 10 trials): modes, HQ %, reverse KL
    "ring": {"GAN": (6.3, 98.2, 0.45), "ALI": (6.6, 97.6, 0.36), "PacGAN2": (7.9, 95.6, 0.07)},
    "grid": {"GAN": (17.3, 94.8, 0.70), "ALI": (24.1, 95.7, 0.14), "PacGAN2": (23.8, 91.3, 0.13)},
}
LOSSES = {
    "fgan gan": ["--loss", "fgan", "--divergence", "gan"],
    "fgan gan + R1(0.1)": ["--loss", "fgan", "--divergence", "gan", "--penalty", "r1=0.1"],
    "wgan-gp": ["--loss", "wgan-gp", "--critic-steps", "5"],
    "wgan-div": ["--loss", "wgan-div", "--critic-steps", "5"],
    "relativistic": ["--loss", "relativistic"],
    "mmd": ["--loss", "mmd", "--critic-steps", "1"],
}


def main(args):
    rows = []
    for data in args.data:
        for name, flags in LOSSES.items():
            results = []
            for seed in args.seeds:
                argv = ["train", "--data", data, "--steps", str(args.steps), "--seed", str(seed),
                        "--out", f"{args.out}/{data}/{name.replace(' ', '_')}/{seed}", "--quiet", *flags]
                parsed = cli.build_parser().parse_args(argv)
                results.append(cli.train(parsed))
            modes = statistics.mean(r[metrics.KEY_MODES] for r in results)
            hq = 100 * statistics.mean(r[metrics.KEY_HIGH_QUALITY] for r in results)
            rkl = statistics.mean(r[metrics.KEY_REVERSE_KL] for r in results)
            secs = statistics.mean(r["wall_time_s"] for r in results)
            rows.append((data, name, modes, hq, rkl, secs))
            print(json.dumps(rows[-1]), flush=True)
    print("| target | method | modes | HQ % | reverse KL | s/run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for data, name, modes, hq, rkl, secs in rows:
        print(f"| {data} | bayesgan {name} ({args.steps} steps) | {modes:.1f} | {hq:.1f} | {rkl:.2f} | {secs:.0f} |")
    for data in args.data:
        for name, (modes, hq, rkl) in PACGAN[data].items():
            print(f"| {data} | PacGAN Table 1: {name} (400k iterations) | {modes} | {hq} | {rkl} | |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/mode_coverage")
    main(p.parse_args())
