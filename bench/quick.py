#!/usr/bin/env python3
"""Quick figures against a stack started by deploy/local/up.sh:

1. two 12 MP phone photos: time from the POST /v1/posts response until both
   images are ready (median of ROUNDS rounds);
2. POST /v1/posts latency with already-uploaded image ids (median of 50).

Usage: bench/quick.py [ROUNDS]   (standard library only)
The full benchmark suite (baseline, load, relay throughput) comes later.
"""
import json, os, statistics, sys, time

from stack import IMAGES, PHOTOS, POSTS, caller

call = caller("bench-user")


def upload(name):
    with open(os.path.join(PHOTOS, name), "rb") as f:
        return call("POST", IMAGES + "/v1/uploads", f.read(), "application/octet-stream")["id"]


def create(ids):
    started = time.perf_counter()
    post = call("POST", POSTS + "/v1/posts", json.dumps({"title": "bench", "body": "", "image_ids": ids}).encode())
    return post["id"], time.perf_counter() - started


def delivery_quantiles(url, queue, event_type, quantiles=(0.5, 0.99)):
    """Quantiles of event_delivery_seconds from a /metrics page, by linear
    interpolation inside the histogram's buckets (as Prometheus does)."""
    import re, urllib.request
    text = urllib.request.urlopen(url).read().decode()
    pattern = re.compile(r'event_delivery_seconds_bucket\{queue="%s",type="%s",le="([^"]+)"\} (\S+)'
                         % (re.escape(queue), re.escape(event_type)))
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(n)) for le, n in pattern.findall(text))
    if not buckets or buckets[-1][1] == 0:
        return None
    total, out = buckets[-1][1], []
    for q in quantiles:
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                upper = lower if upper == float("inf") else upper
                share = (rank - below) / (count - below) if count > below else 1.0
                out.append(lower + (upper - lower) * share)
                break
            lower, below = upper, count
    return out, int(total)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    ready_after = []
    for _ in range(rounds):
        ids = [upload("phone12_dragonfly_4032x3024.jpg"), upload("phone12_seeding_4032x3024.jpg")]
        post_id, _ = create(ids)
        answered = time.perf_counter()
        while True:
            post = call("GET", POSTS + "/v1/posts/" + post_id)
            statuses = {i["status"] for i in post["images"]}
            if statuses == {"ready"}:
                break
            if "failed" in statuses or time.perf_counter() - answered > 120:
                sys.exit("not ready: %s" % post)
            time.sleep(0.01)
        ready_after.append(time.perf_counter() - answered)
    ids = [upload("Dragonfly_by_Bolly.jpg")]
    latencies = [create(ids)[1] for _ in range(50)]
    print("two 12 MP photos, POST response -> all variants ready: median %.0f ms (min %.0f, max %.0f, %d rounds)"
          % (1000 * statistics.median(ready_after), 1000 * min(ready_after), 1000 * max(ready_after), rounds))
    print("POST /v1/posts with one uploaded image: median %.1f ms (p90 %.1f ms, 50 requests)"
          % (1000 * statistics.median(latencies), 1000 * sorted(latencies)[44]))
    found = delivery_quantiles(IMAGES + "/metrics", "image-service.post-events", "post.created")
    if found:
        (p50, p99), count = found
        print("post.created, outbox write -> image service: p50 %.1f ms, p99 %.1f ms (%d events since start, "
              "from event_delivery_seconds)" % (1000 * p50, 1000 * p99, count))


if __name__ == "__main__":
    main()
