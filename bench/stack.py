"""What the bench scripts share: the local stack's addresses, a token, and
one authenticated JSON call. Standard library only."""
import json, os, subprocess, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.environ.get("CORPUS_DIR", os.path.join(HERE, "..", "..", "shared", "corpus"))
PHOTOS = os.path.join(CORPUS, "photos")
POSTS, IMAGES = "http://127.0.0.1:8080", "http://127.0.0.1:8081"


def token(user):
    return subprocess.check_output([os.path.join(HERE, "..", "deploy", "local", "token.sh"), user]).decode().strip()


def caller(user):
    """A function (method, url, body=None, content_type=...) -> parsed JSON, as `user`."""
    bearer = "Bearer " + token(user)

    def call(method, url, body=None, content_type="application/json"):
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", bearer)
        if body is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    return call
