#!/usr/bin/env bash
# Checks the deployment files without a cluster or Docker:
#  - every Kubernetes manifest in deploy/k8s against the Kubernetes JSON
#    schemas (kubernetes-validate, strict: unknown fields are errors);
#  - the KEDA resources (no schemas there) and kustomization.yaml for shape,
#    and that kustomization.yaml lists every manifest but secret.example.yaml;
#  - that every setting of the three programs (the DOCS arrays in
#    */src/configuration.rs) is in the ConfigMap or is a secretKeyRef of the
#    Deployment of the program that reads it, secrets only in the Secret, and
#    no unknown setting anywhere;
#  - deploy/compose.yaml: parses, every build.target is a stage of
#    deploy/Dockerfile, mounted files exist, settings are known.
# Installs kubernetes-validate into a venv under
# ${POSTS_IMAGES_CACHE:-~/.cache/posts-images} on first use (from PyPI).
# Usage: deploy/check-manifests.sh   (K8S_VERSION=1.31 to pick another version)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,15p' "$0"; exit 0 ;; esac

K8S_VERSION="${K8S_VERSION:-1.30}"
KV_VERSION="1.37.0" # ships schemas for Kubernetes 1.25 to 1.37
CACHE="${POSTS_IMAGES_CACHE:-$HOME/.cache/posts-images}"
VENV="$CACHE/venv"

fail() { echo "check-manifests: FAILED: $*" >&2; exit 1; }

if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$KV_VERSION" ]; then
  echo "check-manifests: installing kubernetes-validate $KV_VERSION into $VENV"
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || fail "cannot create a Python venv at $VENV (is python3-venv installed?)"
  "$VENV/bin/pip" install --quiet "kubernetes-validate==$KV_VERSION" \
    || fail "cannot install kubernetes-validate $KV_VERSION from PyPI"
fi

# Structural and cross-file checks; writes the manifests that have schemas
# (built-in kinds only) to $list.
list=$(mktemp)
trap 'rm -f "$list"' EXIT
"$VENV/bin/python" - "$list" <<'PY' || fail "see the errors above"
import os, re, sys
import yaml

errors = []
def error(msg):
    errors.append(msg)

def load_all(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        error(f"{path}: does not parse as YAML: {e}")
        return []

PROGRAMS = {  # name -> (env prefix, configuration.rs)
    "post-service": ("POST", "post-service/src/configuration.rs"),
    "image-service": ("IMAGE", "image-service/src/configuration.rs"),
    "outbox-relay": ("RELAY", "outbox-relay/src/configuration.rs"),
}
PORT_SETTING = {"post-service": "POST_APPLICATION__PORT",
                "image-service": "IMAGE_APPLICATION__PORT",
                "outbox-relay": "RELAY_ADMIN__PORT"}
# Settings that hold a secret or a URL with credentials: Secret only.
SECRET = re.compile(r"(SECRET|__DATABASE_URLS?$|_DATABASE__URL$|_AMQP__URL$)")

def settings_of(path, prefix):
    text = open(path).read()
    block = re.search(r"const DOCS[^=]*=\s*&\[(.*?)\];", text, re.S)
    if not block:
        error(f"{path}: no DOCS array found")
        return set()
    keys = re.findall(r'\(\s*"([a-z0-9_]+\.[a-z0-9_]+)"\s*,', block.group(1))
    if not keys:
        error(f"{path}: DOCS array lists no settings")
    return {f"{prefix}_{k.replace('.', '__').upper()}" for k in keys}

settings = {p: settings_of(src, prefix) for p, (prefix, src) in PROGRAMS.items()}
owner = {name: p for p, names in settings.items() for name in names}
prefixes = {prefix: p for p, (prefix, _) in PROGRAMS.items()}

def program_of_var(name):
    return prefixes.get(name.split("_", 1)[0])

# --- deploy/k8s ---------------------------------------------------------------
K8S = "deploy/k8s"
files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
docs = {f: load_all(os.path.join(K8S, f)) for f in files}
schema_files = []
by_kind = {}
for f, items in docs.items():
    if not items:
        error(f"{K8S}/{f}: holds no resource")
    crd = 0
    for d in items:
        where = f"{K8S}/{f}"
        if not isinstance(d, dict):
            error(f"{where}: a document is not a mapping")
            continue
        api, kind = d.get("apiVersion"), d.get("kind")
        name = (d.get("metadata") or {}).get("name")
        if not api or not kind:
            error(f"{where}: a document lacks apiVersion or kind")
            continue
        if api.startswith("kustomize.config.k8s.io/"):
            crd += 1
            by_kind.setdefault(kind, []).append((f, d))
            continue
        if not name:
            error(f"{where}: {kind} lacks metadata.name")
            continue
        by_kind.setdefault(kind, []).append((f, d))
        if api.startswith("keda.sh/"):
            # No JSON schema ships for KEDA's CRDs: check the shape only.
            crd += 1
            if kind not in ("ScaledObject", "TriggerAuthentication"):
                error(f"{where}: unexpected KEDA kind {kind}")
            if not isinstance(d.get("spec"), dict) or not d["spec"]:
                error(f"{where}: {kind}/{name} lacks a spec")
            if (d.get("metadata") or {}).get("namespace") != "posts-images":
                error(f"{where}: {kind}/{name} is not in namespace posts-images")
    if crd and crd != len(items):
        error(f"{K8S}/{f}: mixes CRD or kustomize documents with built-in kinds; keep them in separate files")
    elif not crd and items:
        schema_files.append(f"{K8S}/{f}")

# kustomization.yaml lists every manifest except the example Secret.
kust = [d for f, d in by_kind.get("Kustomization", []) if f == "kustomization.yaml"]
if not kust:
    error(f"{K8S}/kustomization.yaml: missing or not a Kustomization")
else:
    listed = kust[0].get("resources") or []
    expected = set(files) - {"kustomization.yaml", "secret.example.yaml"}
    for r in listed:
        if not os.path.exists(os.path.join(K8S, r)):
            error(f"{K8S}/kustomization.yaml: resource {r} does not exist")
    if "secret.example.yaml" in listed:
        error(f"{K8S}/kustomization.yaml: must not list secret.example.yaml")
    for missing in sorted(expected - set(listed)):
        error(f"{K8S}/kustomization.yaml: does not list {missing}")

# ScaledObjects and TriggerAuthentications refer to things that exist.
deployments = {d["metadata"]["name"]: d for _, d in by_kind.get("Deployment", [])}
auths = {d["metadata"]["name"] for _, d in by_kind.get("TriggerAuthentication", [])}
for f, so in by_kind.get("ScaledObject", []):
    spec = so.get("spec") or {}
    target = (spec.get("scaleTargetRef") or {}).get("name")
    if target not in deployments:
        error(f"{K8S}/{f}: ScaledObject targets unknown Deployment {target}")
    for t in spec.get("triggers") or []:
        ref = (t.get("authenticationRef") or {}).get("name")
        if ref and ref not in auths:
            error(f"{K8S}/{f}: trigger uses unknown TriggerAuthentication {ref}")

# Settings: ConfigMap and secretKeyRefs.
cms = [d for _, d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == "posts-images-settings"]
if not cms:
    error(f"{K8S}: no ConfigMap posts-images-settings")
config = (cms[0].get("data") or {}) if cms else {}
secret_keys = set()
for _, s in by_kind.get("Secret", []):
    if s["metadata"]["name"] == "posts-images-secrets":
        secret_keys |= set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())
if not secret_keys:
    error(f"{K8S}/secret.example.yaml: no Secret posts-images-secrets with keys")

for name, value in config.items():
    program = program_of_var(name)
    if program is None:
        error(f"ConfigMap: {name} belongs to no program (prefixes POST_, IMAGE_, RELAY_)")
    elif name not in settings[program]:
        error(f"ConfigMap: {name} is not a setting of {program}")
    if SECRET.search(name):
        error(f"ConfigMap: {name} is a secret; it belongs in the Secret")
    if not isinstance(value, str):
        error(f"ConfigMap: {name} must be a quoted string")

referenced = set()
for _, t in by_kind.get("TriggerAuthentication", []):
    for ref in (t.get("spec") or {}).get("secretTargetRef") or []:
        referenced.add(ref.get("key"))
for program in PROGRAMS:
    dep = deployments.get(program)
    if dep is None:
        error(f"{K8S}: no Deployment {program}")
        continue
    pod = dep["spec"]["template"]["spec"]
    containers = pod.get("containers") or []
    if len(containers) != 1:
        error(f"Deployment {program}: expected one container")
        continue
    c = containers[0]
    if not any((e.get("configMapRef") or {}).get("name") == "posts-images-settings"
               for e in c.get("envFrom") or []):
        error(f"Deployment {program}: no envFrom of ConfigMap posts-images-settings")
    from_secret = set()
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            error(f"Deployment {program}: env {e.get('name')} is not a secretKeyRef (plain settings go in the ConfigMap)")
            continue
        if ref.get("name") != "posts-images-secrets":
            error(f"Deployment {program}: env {e['name']} refers to Secret {ref.get('name')}")
        if ref.get("key") not in secret_keys:
            error(f"Deployment {program}: env {e['name']} refers to key {ref.get('key')} missing from secret.example.yaml")
        if e["name"] not in settings[program]:
            error(f"Deployment {program}: env {e['name']} is not a setting of {program}")
        from_secret.add(e["name"])
        referenced.add(ref.get("key"))
    for name in sorted(settings[program]):
        in_config, in_secret = name in config, name in from_secret
        if not in_config and not in_secret:
            error(f"{program}: setting {name} is neither in the ConfigMap nor a secretKeyRef of its Deployment")
        elif in_config and in_secret:
            error(f"{program}: setting {name} is both in the ConfigMap and in the Secret")
        elif SECRET.search(name) and not in_secret:
            error(f"{program}: setting {name} is a secret and must come from the Secret")
    # The port the program listens on is the port the probes and Service use.
    port = config.get(PORT_SETTING[program])
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    if port is not None and str(ports.get("http")) != str(port):
        error(f"Deployment {program}: containerPort http {ports.get('http')} != {PORT_SETTING[program]} {port}")
    # The hardening the images are built for.
    sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
        error(f"Deployment {program}: runAsNonRoot is not set")
    if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
            or "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        error(f"Deployment {program}: container securityContext must set readOnlyRootFilesystem, "
              "allowPrivilegeEscalation: false and drop ALL capabilities")
    if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/readyz" \
            or (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/healthz":
        error(f"Deployment {program}: readinessProbe must GET /readyz and livenessProbe /healthz")
for key in sorted(secret_keys - referenced):
    error(f"secret.example.yaml: key {key} is used by no Deployment or TriggerAuthentication")

# --- deploy/compose.yaml ------------------------------------------------------
COMPOSE = "deploy/compose.yaml"
compose_docs = load_all(COMPOSE)
compose = compose_docs[0] if len(compose_docs) == 1 and isinstance(compose_docs[0], dict) else None
if compose is None:
    error(f"{COMPOSE}: not one YAML mapping")
    compose = {}
services = compose.get("services") or {}
if not isinstance(services, dict) or not services:
    error(f"{COMPOSE}: no services")
    services = {}
stages_by_file = {}
def stages(path):
    if path not in stages_by_file:
        found = set()
        try:
            for line in open(path):
                m = re.match(r"\s*FROM\s+(?:--\S+\s+)*\S+\s+AS\s+(\S+)", line, re.I)
                if m:
                    found.add(m.group(1).lower())
        except OSError as e:
            error(f"{COMPOSE}: cannot read Dockerfile {path}: {e}")
        stages_by_file[path] = found
    return stages_by_file[path]

base = os.path.dirname(COMPOSE)
for svc, spec in services.items():
    where = f"{COMPOSE}: service {svc}"
    if not isinstance(spec, dict):
        error(f"{where}: not a mapping")
        continue
    build = spec.get("build")
    program = None
    if build is not None:
        if not isinstance(build, dict) or not build.get("target"):
            error(f"{where}: build has no target")
        else:
            context = os.path.normpath(os.path.join(base, build.get("context", ".")))
            dockerfile = os.path.normpath(os.path.join(context, build.get("dockerfile", "Dockerfile")))
            target = build["target"]
            if not os.path.isfile(dockerfile):
                error(f"{where}: Dockerfile {dockerfile} does not exist")
            elif target.lower() not in stages(dockerfile):
                error(f"{where}: build.target {target} is not a stage of {dockerfile} "
                      f"(stages: {', '.join(sorted(stages(dockerfile)))})")
            program = target if target in PROGRAMS else None
    for dep in (spec.get("depends_on") or []):
        if dep not in services:
            error(f"{where}: depends_on unknown service {dep}")
    for vol in spec.get("volumes") or []:
        src = vol.split(":", 1)[0] if isinstance(vol, str) else (vol or {}).get("source", "")
        if src.startswith((".", "/")) and not os.path.exists(os.path.join(base, src)):
            error(f"{where}: mounted file {src} does not exist")
    env = spec.get("environment") or {}
    names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
    for name in names:
        p = program_of_var(name)
        if p is not None and name not in settings[p]:
            error(f"{where}: {name} is not a setting of {p}")
        if p is not None and program is not None and p != program:
            error(f"{where}: {name} is a setting of {p}, not of {program}")

if errors:
    for e in errors:
        print(f"ERROR {e}")
    sys.exit(1)
total = sum(len(s) for s in settings.values())
print(f"OK settings: all {total} of the 3 programs placed (ConfigMap or secretKeyRef)")
print("OK shape: kustomization.yaml, KEDA ScaledObject/TriggerAuthentication, compose.yaml")
with open(sys.argv[1], "w") as out:
    out.write("".join(f + "\n" for f in schema_files))
PY

mapfile -t files <"$list"
[ "${#files[@]}" -gt 0 ] || fail "no manifests to validate"

# kubernetes-validate only warns about a kind it has no schema for (say, a
# mistyped apiVersion) and exits 0, so any WARN line counts as a failure too.
if ! output=$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "${files[@]}" 2>&1); then
  echo "$output"
  fail "kubernetes-validate found errors (Kubernetes $K8S_VERSION, strict)"
fi
echo "$output"
if grep -qvE '^INFO ' <<<"$output"; then
  fail "kubernetes-validate printed warnings (Kubernetes $K8S_VERSION, strict)"
fi
echo "check-manifests: OK (Kubernetes $K8S_VERSION schemas, kubernetes-validate $KV_VERSION)"
