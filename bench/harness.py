"""What bench/run and bench/faults share: a scratch stack of the programs
(fresh databases, RabbitMQ vhost and buckets, free ports, removed at the
end), authenticated calls, and access to PostgreSQL and RabbitMQ.
Standard library only."""
import json, os, shutil, signal, socket, subprocess, sys, time
import urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.environ.get("CORPUS_DIR", os.path.join(ROOT, "..", "shared", "corpus"))
PHOTOS = os.path.join(CORPUS, "photos")
CACHE = os.path.expanduser("~/.cache/posts-images")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
PG = "postgres://postgres@127.0.0.1:5432"
# The S3 server the stack uses and the directory it keeps its buckets in
# (s3s-fs makes a bucket of each directory there). Set both to measure
# against another s3s-fs, for example one whose data is on tmpfs.
S3_ENDPOINT = os.environ.get("BENCH_S3_ENDPOINT", "http://127.0.0.1:9000")
S3_DATA = os.environ.get("BENCH_S3_DATA", os.path.join(CACHE, "s3-data"))
RABBIT_API = "http://127.0.0.1:15672/api"


def log(message):
    print("==> " + message, file=sys.stderr, flush=True)


def dev_env():
    values = {}
    with open(os.path.join(ROOT, "deploy", "local", "dev.env")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                key, value = line.strip().split("=", 1)
                values[key] = value
    return values


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, db="postgres"):
    return subprocess.check_output(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                                    "-qAtc", sql]).decode().strip()


def rabbit(method, path, body=None):
    request = urllib.request.Request(RABBIT_API + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest, the local broker
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def build(profile, packages):
    """Builds `packages` with cargo and returns the directory of the binaries."""
    log("building (%s)" % profile)
    command = ["cargo", "build", "--quiet", "--profile", profile]
    for package in packages:
        command += ["-p", package]
    subprocess.check_call(command, cwd=ROOT, env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    return os.path.join(TARGET, "debug" if profile == "dev" else profile)


def token(user):
    return subprocess.check_output([os.path.join(ROOT, "deploy", "local", "token.sh"), user]).decode().strip()


class Call:
    """Authenticated JSON calls as one user."""

    def __init__(self, bearer_token, timeout=300):
        self.bearer, self.timeout = "Bearer " + bearer_token, timeout

    def __call__(self, method, url, body=None, content_type="application/json", headers=()):
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", self.bearer)
        if body is not None:
            request.add_header("Content-Type", content_type)
        for name, value in headers:
            request.add_header(name, value)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)


class Stack:
    """Scratch databases, vhost and buckets, and `replicas` instances of each
    program (plus the synchronous baseline when asked), removed on exit.
    Instance 0 of a program is named after it, others `<program>-<n>`."""

    def __init__(self, bin_dir, label="bench", replicas=1, baseline=False, settings=None):
        self.bin_dir, self.replicas, self.baseline = bin_dir, replicas, baseline
        self.extra = settings or {}
        self.env = dev_env()
        suffix = "%s_%d" % (label, os.getpid())
        self.dbs = {name: "%s_%s" % (name, suffix) for name in ("posts", "images", "relay", "baseline")}
        self.vhost = suffix.replace("_", "-")
        self.buckets = {"images": "images-" + self.vhost, "baseline": "baseline-" + self.vhost}
        self.programs, self.specs, self.ports = {}, {}, {}
        self.logs = os.path.join(CACHE, "run", self.vhost)

    @staticmethod
    def name(program, instance=0):
        return program if instance == 0 else "%s-%d" % (program, instance)

    def url(self, program, instance=0):
        return "http://127.0.0.1:%d" % self.ports[self.name(program, instance)]

    def db_url(self, name):
        return "%s/%s" % (PG, self.dbs[name])

    def __enter__(self):
        for db in self.dbs.values():
            psql("CREATE DATABASE %s" % db)
        rabbit("PUT", "/vhosts/" + self.vhost)
        rabbit("PUT", "/permissions/%s/guest" % self.vhost, {"configure": ".*", "write": ".*", "read": ".*"})
        for bucket in self.buckets.values():
            os.makedirs(os.path.join(S3_DATA, bucket), exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        amqp = "amqp://guest:guest@127.0.0.1:5672/" + self.vhost
        secret, s3_key, s3_secret = self.env["DEV_JWT_SECRET"], self.env["S3_ACCESS_KEY"], self.env["S3_SECRET_KEY"]
        for i in range(self.replicas):
            self.define("outbox-relay", i, "RELAY_ADMIN__PORT", RELAY_AMQP__URL=amqp,
                        RELAY_OUTBOX__DATABASE_URLS="%s,%s" % (self.db_url("posts"), self.db_url("images")),
                        RELAY_DEAD_LETTERS__DATABASE_URL=self.db_url("relay"))
        for i in range(self.replicas):
            self.define("image-service", i, "IMAGE_APPLICATION__PORT", IMAGE_DATABASE__URL=self.db_url("images"),
                        IMAGE_AMQP__URL=amqp, IMAGE_AUTH__JWT_SECRET=secret,
                        IMAGE_S3__ENDPOINT=S3_ENDPOINT, IMAGE_S3__BUCKET=self.buckets["images"],
                        IMAGE_S3__ACCESS_KEY_ID=s3_key, IMAGE_S3__SECRET_ACCESS_KEY=s3_secret)
        for i in range(self.replicas):
            self.define("post-service", i, "POST_APPLICATION__PORT", POST_DATABASE__URL=self.db_url("posts"),
                        POST_AMQP__URL=amqp, POST_AUTH__JWT_SECRET=secret)
        if self.baseline:
            self.define("baseline", 0, "BASELINE_PORT", BASELINE_DATABASE_URL=self.db_url("baseline"),
                        BASELINE_S3_ENDPOINT=S3_ENDPOINT, BASELINE_S3_BUCKET=self.buckets["baseline"],
                        BASELINE_S3_ACCESS_KEY_ID=s3_key,
                        BASELINE_S3_SECRET_ACCESS_KEY=s3_secret)
        for name in list(self.specs):
            self.start(name)
        return self

    def define(self, program, instance, port_setting, **settings):
        name = self.name(program, instance)
        self.ports[name] = free_port()
        settings[port_setting] = self.ports[name]
        settings.update(self.extra.get(program, {}))
        self.specs[name] = (program, settings)

    def start(self, name, wait=True):
        """Starts (or restarts) instance `name`; waits for /readyz unless told not to."""
        program, settings = self.specs[name]
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_LOG", "warn"), HOSTNAME=name)
        env.update({k: str(v) for k, v in settings.items()})
        out = open(os.path.join(self.logs, name + ".log"), "a")
        self.programs[name] = subprocess.Popen([os.path.join(self.bin_dir, program)], env=env, stdout=out,
                                               stderr=out)
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.ports[name], timeout=2).read()
                return time.time()
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.programs[name].poll() is not None or time.time() > deadline:
                    sys.exit("%s did not become ready; log: %s\n%s" % (name, self.log_path(name),
                                                                       self.log_tail(name)))
                time.sleep(0.1)

    def kill(self, name, sig=signal.SIGKILL):
        process = self.programs[name]
        process.send_signal(sig)
        return process.wait(timeout=60)

    def log_path(self, name):
        return os.path.join(self.logs, name + ".log")

    def log_tail(self, name, chars=3000):
        with open(self.log_path(name)) as f:
            return f.read()[-chars:]

    def __exit__(self, *exc):
        for process in self.programs.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.programs.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for db in self.dbs.values():
            subprocess.call(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", db])
        try:
            rabbit("DELETE", "/vhosts/" + self.vhost)
        except urllib.error.URLError:
            pass
        for bucket in self.buckets.values():
            shutil.rmtree(os.path.join(S3_DATA, bucket), ignore_errors=True)
