#!/usr/bin/env python3
"""Peak memory of the image service under a burst of 12 MP uploads.

    python3 bench/burst.py [IMAGES] [CLIENTS]     (defaults: 100 images, 100 clients)

Against a stack started by deploy/local/up.sh: resets the image service's
peak-RSS counter (/proc/PID/clear_refs), uploads IMAGES 12 MP phone photos
from CLIENTS concurrent clients, attaches them to posts (two per post), waits
until every image is ready, and prints the image service's resident memory
before, its peak (VmHWM) during the burst, and the time the burst took.
Exits non-zero if an upload fails or an image is not ready within 10 minutes.
Standard library only; run as the user that runs the stack (or root).
"""
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor

from stack import IMAGES, PHOTOS, POSTS, caller

SHOTS = [os.path.join(PHOTOS, n) for n in
         ("phone12_dragonfly_4032x3024.jpg", "phone12_seeding_4032x3024.jpg",
          "phone12_dragonfly_4032x3024_orient6.jpg")]
RUN = os.path.expanduser("~/.cache/posts-images/run")
call = caller("burst-user")


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} for pid {pid}")


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with open(os.path.join(RUN, "image-service.pid")) as f:
        pid = int(f.read())
    photos = [open(p, "rb").read() for p in SHOTS]
    before = status_kb(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(
            lambda i: call("POST", IMAGES + "/v1/uploads", photos[i % len(photos)], "application/octet-stream")["id"],
            range(count)))
        uploaded = time.perf_counter()
        pairs = [ids[i:i + 2] for i in range(0, count, 2)]
        posts = list(pool.map(
            lambda p: call("POST", POSTS + "/v1/posts",
                           json.dumps({"title": "burst", "body": "", "image_ids": p}).encode())["id"],
            pairs))
    pending = set(posts)
    deadline = time.perf_counter() + 600
    while pending:
        for post_id in list(pending):
            statuses = {i["status"] for i in call("GET", POSTS + "/v1/posts/" + post_id)["images"]}
            if "failed" in statuses:
                sys.exit(f"post {post_id} has a failed image")
            if statuses == {"ready"}:
                pending.discard(post_id)
        if time.perf_counter() > deadline:
            sys.exit(f"{len(pending)} posts not ready after 10 minutes")
        time.sleep(0.2)
    done = time.perf_counter()
    peak = status_kb(pid, "VmHWM")
    print(f"burst of {count} x 12 MP photos from {clients} clients ({len(posts)} posts):")
    print(f"  uploads took {uploaded - started:.1f} s; all variants ready after {done - started:.1f} s "
          f"({count / (done - started):.1f} images/s)")
    print(f"  image-service RSS before {before / 1024:.0f} MiB, peak during the burst {peak / 1024:.0f} MiB "
          f"(limit 1024 MiB)")
    if peak > 1024 * 1024:
        sys.exit("peak RSS over 1 GiB")


if __name__ == "__main__":
    main()
