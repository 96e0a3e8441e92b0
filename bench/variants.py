#!/usr/bin/env python3
"""Variant pipeline against libvips, in one run on the same files.

    python3 bench/variants.py [--rounds R] [--avif] [FILE...]

Files default to ../shared/corpus/photos/* (or $CORPUS_DIR/photos). Ours is
image-service's pipeline (examples/variants_bench.rs, release build): decode,
orient, colour to sRGB, resize to 400/800/1600 px wide, lossy WebP at quality
80 (and the placeholder). libvips does the same work through pyvips:
`thumbnail_buffer` per width (shrink-on-load, auto-rotate, sRGB export, never
upscaled) then `webpsave_buffer` at Q 80 with metadata dropped; its operation
cache is off. Both run single-threaded (VIPS_CONCURRENCY=1) and with every
core (one image per thread). `--avif` adds the AVIF variants: ours through
ravif (quality 60, speed 8, after the WebP ones, as the service does), libvips
through heifsave (AV1, Q 60, effort 1).

Needs `pip install pyvips pyvips-binary` (installed when missing).
Ratio = our time / libvips' time (below 1.0: ours is faster).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORES = os.cpu_count() or 1
WIDTHS = (400, 800, 1600)


def vips_worker(files, rounds, threads, avif):
    """Runs in a child process, so VIPS_CONCURRENCY applies from the start."""
    import pyvips
    from concurrent.futures import ThreadPoolExecutor

    pyvips.cache_set_max(0)
    inputs = [(f, open(f, "rb").read()) for f in files]

    def process(data):
        written = 0
        for width in WIDTHS:
            image = pyvips.Image.thumbnail_buffer(data, width, height=100_000, size="down")
            if avif:
                # Saved twice: the sequential decode must be kept in memory.
                image = image.copy_memory()
            written += len(image.webpsave_buffer(Q=80, keep="none"))
            if avif:
                written += len(
                    image.heifsave_buffer(Q=60, compression="av1", effort=1, keep="none")
                )
        return written

    process(inputs[0][1])
    if threads == 1:
        medians = {}
        started = time.perf_counter()
        for name, data in inputs:
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                process(data)
                times.append((time.perf_counter() - t) * 1000)
            medians[name] = statistics.median(times)
        elapsed = time.perf_counter() - started
        return {"threads": 1, "median_ms": medians, "images_per_s": len(inputs) * rounds / elapsed}
    jobs = [data for _ in range(rounds) for _, data in inputs]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(process, jobs))
    return {"threads": threads, "images_per_s": len(jobs) / (time.perf_counter() - started)}


def run_vips(files, rounds, threads, avif):
    env = dict(os.environ, VIPS_CONCURRENCY="1" if threads == 1 else str(CORES))
    cmd = [sys.executable, __file__, "--vips-worker", str(threads), "--rounds", str(rounds)]
    cmd += ["--avif"] if avif else []
    return run_json(cmd + files, env)


def run_ours(binary, files, rounds, threads, avif):
    cmd = [binary, "--threads", str(threads), "--rounds", str(rounds)]
    cmd += ["--avif"] if avif else []
    return run_json(cmd + files, None)


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def ensure_pyvips():
    try:
        import pyvips  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "pyvips", "pyvips-binary"], check=True
        )


def build_ours():
    target = os.environ.get(
        "CARGO_TARGET_DIR", os.path.expanduser("~/.cache/posts-images/target")
    )
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "image-service", "--example", "variants_bench"],
        cwd=ROOT,
        check=True,
        env=dict(os.environ, CARGO_TARGET_DIR=target),
    )
    return os.path.join(target, "release", "examples", "variants_bench")


def table(files, rounds, avif, binary):
    label = "WebP + AVIF" if avif else "WebP"
    ours1 = run_ours(binary, files, rounds, 1, avif)
    vips1 = run_vips(files, rounds, 1, avif)
    oursn = run_ours(binary, files, rounds, CORES, avif)
    vipsn = run_vips(files, rounds, CORES, avif)
    print(f"\n### {label}: decode, orient, sRGB, 400/800/1600 px ({rounds} rounds, median)\n")
    print("| photo | ours, 1 thread | libvips, 1 thread | ours / libvips |")
    print("| --- | ---: | ---: | ---: |")
    for f in files:
        o, v = ours1["median_ms"][f], vips1["median_ms"][f]
        print(f"| {os.path.basename(f)} | {o:.0f} ms | {v:.0f} ms | {o / v:.2f} |")
    print(f"\n| throughput | ours | libvips | ours / libvips (time) |")
    print("| --- | ---: | ---: | ---: |")
    for name, o, v in (("1 thread", ours1, vips1), (f"{CORES} threads", oursn, vipsn)):
        ratio = v["images_per_s"] / o["images_per_s"]
        print(f"| {name} | {o['images_per_s']:.2f} images/s | {v['images_per_s']:.2f} images/s | {ratio:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--avif", action="store_true", help="also compare AVIF variants (slow)")
    parser.add_argument("--vips-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vips_worker:
        print(json.dumps(vips_worker(args.files, args.rounds, args.vips_worker, args.avif)))
        return
    corpus = os.environ.get("CORPUS_DIR", os.path.join(ROOT, "..", "shared", "corpus"))
    files = args.files or sorted(glob.glob(os.path.join(corpus, "photos", "*")))
    if not files:
        sys.exit(f"no photos: pass files or set CORPUS_DIR (looked in {corpus}/photos)")
    files = [os.path.abspath(f) for f in files]
    ensure_pyvips()
    binary = build_ours()
    import pyvips

    print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, {CORES} cores, "
          f"{len(files)} photos")
    table(files, args.rounds, False, binary)
    if args.avif:
        table(files, max(1, args.rounds // 5), True, binary)


if __name__ == "__main__":
    main()
