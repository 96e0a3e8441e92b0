#!/usr/bin/env python3
"""AVIF against WebP on a stack started with AVIF on:

    IMAGE_VARIANTS__AVIF=true deploy/local/up.sh && bench/avif.py

Posts the two 12 MP phone photos, prints when their WebP variants were ready
and when their AVIF variants were listed, each variant's size, and the mean
encode time per variant and format from the image service's /metrics.
Standard library only.
"""
import json, os, re, subprocess, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
T = subprocess.check_output([os.path.join(HERE, "..", "deploy", "local", "token.sh"), "bench-avif"]).decode().strip()
def call(m, u, b=None, ct="application/json"):
    r = urllib.request.Request(u, data=b, method=m); r.add_header("Authorization", "Bearer " + T)
    if b is not None: r.add_header("Content-Type", ct)
    with urllib.request.urlopen(r) as x: return json.load(x)
P = os.path.join(HERE, "..", "..", "shared", "corpus", "photos") + "/"
ids = [call("POST", "http://127.0.0.1:8081/v1/uploads", open(P + f, "rb").read(), "application/octet-stream")["id"]
       for f in ["phone12_dragonfly_4032x3024.jpg", "phone12_seeding_4032x3024.jpg"]]
t0 = time.time()
post = call("POST", "http://127.0.0.1:8080/v1/posts", json.dumps({"title": "m", "image_ids": ids}).encode())
ready = avif = None
while avif is None and time.time() - t0 < 120:  # AVIF off: gives up after 2 min
    imgs = [call("GET", "http://127.0.0.1:8081/v1/images/" + i) for i in ids]
    if ready is None and all(i["process_status"] == "ready" for i in imgs): ready = time.time() - t0
    if all(sum(v["format"] == "avif" for v in i["variants"]) == 3 for i in imgs): avif = time.time() - t0
    time.sleep(0.02)
if avif is None:
    raise SystemExit("AVIF variants never appeared: start the stack with IMAGE_VARIANTS__AVIF=true")
print(f"two 12 MP photos: WebP ready after {ready*1000:.0f} ms, AVIF listed after {avif*1000:.0f} ms")
for i in imgs:
    print(" ", [(v["name"], v["format"], v["width"], v["bytes"]) for v in i["variants"]])
m = urllib.request.urlopen("http://127.0.0.1:8081/metrics").read().decode()
for fmt in ["webp", "avif"]:
    for var in ["1x", "2x", "large"]:
        s = re.search(r'image_processing_seconds_sum\{format="%s",stage="encode",variant="%s"\} (\S+)' % (fmt, var), m)
        c = re.search(r'image_processing_seconds_count\{format="%s",stage="encode",variant="%s"\} (\S+)' % (fmt, var), m)
        if s and c: print(f"  {fmt} {var}: mean encode {float(s.group(1))/float(c.group(1))*1000:.0f} ms over {c.group(1)}")
