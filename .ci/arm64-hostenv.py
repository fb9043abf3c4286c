#!/usr/bin/env python3
"""Host facts for .ci/arm64, read from the host's own configuration (no host name is hard-coded).

  arm64-hostenv.py mirrors SUITE      -> line 1: Debian mirror URI, line 2: security mirror URI (or empty)
      from /etc/apt/sources.list and /etc/apt/sources.list.d/*.list (one-line) and *.sources (deb822)
  arm64-hostenv.py pip [PYTHON]       -> NAME=VALUE lines for the arm64 guest's clean environment
      the index / extra index / find-links URLs, trusted hosts, proxy, timeout and retries the host's pip
      uses (``PYTHON -m pip config list`` + PIP_* variables; pip.conf files read directly if no pip runs),
      and the proxy variables. Host-local settings (file:// indexes, paths, the CA bundle path and the
      constraint file) are left out: the guest gets the host's CA certificates installed instead.
"""

from __future__ import annotations

import ast
import configparser
import glob
import os
import re
import subprocess
import sys
from typing import Dict, Iterator, List, Tuple

CODENAMES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
             "oldoldstable", "oldstable", "stable", "testing", "unstable"}


# ---------------------------------------------------------------------------------------------- apt
def _one_line_entries(path: str) -> Iterator[Tuple[str, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=... signed-by=...]
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                yield parts[1], parts[2]


def _deb822_entries(path: str) -> Iterator[Tuple[str, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for stanza in re.split(r"\n\s*\n", text):
        fields: Dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite


def apt_entries() -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        if os.path.isfile(path):
            out.extend(_one_line_entries(path))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        out.extend(_deb822_entries(path))
    return [(u.rstrip("/"), s) for u, s in out if u.startswith(("http://", "https://"))]


def mirrors(suite: str) -> int:
    entries = apt_entries()
    main = [u for u, s in entries if s == suite]
    main += [u for u, s in entries if s.split("-")[0].split("/")[0] in CODENAMES
             and not s.endswith("-security") and "/updates" not in s]
    security = [u for u, s in entries if s == f"{suite}-security"]
    security += [u for u, s in entries if s.endswith("-security") or s.endswith("/updates")]
    main = [u for u in main if u not in security] or main
    if not main:
        print("no Debian mirror (a deb entry for a Debian suite over http/https) in /etc/apt/sources.list "
              "or /etc/apt/sources.list.d/", file=sys.stderr)
        return 1
    print(main[0])
    print(security[0] if security else "")
    return 0


# ---------------------------------------------------------------------------------------------- pip
def _pip_config_list(python: str) -> Dict[str, str]:
    """``section.key -> value`` from ``python -m pip config list`` ({} when that pip does not run)."""
    try:
        out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values = {}
    for line in out.splitlines():
        m = re.match(r"^([^=]+)=(.*)$", line.strip())
        if not m:
            continue
        try:
            value = ast.literal_eval(m.group(2))
        except (ValueError, SyntaxError):
            value = m.group(2).strip("'\"")
        values[m.group(1)] = str(value)
    return values


def _pip_config_files() -> Dict[str, str]:
    """The same from the pip.conf files pip reads (in its order, later ones win) and PIP_* variables."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        files: List[str] = []
    else:
        xdg = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
        home = os.path.expanduser("~")
        config_home = os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config"))
        files = [os.path.join(d, "pip", "pip.conf") for d in xdg] + ["/etc/pip.conf",
                 os.path.join(home, ".pip", "pip.conf"), os.path.join(config_home, "pip", "pip.conf")]
        if os.environ.get("PIP_CONFIG_FILE"):
            files.append(os.environ["PIP_CONFIG_FILE"])
    values = {}
    for path in files:
        cp = configparser.RawConfigParser()
        try:
            cp.read(path)
        except configparser.Error:
            continue
        for section in cp.sections():
            for key, value in cp.items(section):
                values[f"{section}.{key}"] = value
    return values


def pip_env(python: str) -> int:
    values = _pip_config_list(python) or _pip_config_list(sys.executable) or _pip_config_files()
    # PIP_* variables win over files, as in pip (pip config list shows them as ":env:.key" too)
    for name, value in os.environ.items():
        if name.startswith("PIP_") and name != "PIP_CONFIG_FILE":
            values[":env:." + name[4:].lower().replace("_", "-")] = value

    def get(*keys: str) -> str:
        for section in (":env:", "install", "global"):
            for key in keys:
                if f"{section}.{key}" in values:
                    return values[f"{section}.{key}"]
        return ""

    def remote(value: str, what: str) -> str:
        keep, drop = [], []
        for item in value.split():
            (keep if item.startswith(("http://", "https://")) else drop).append(item)
        if drop:
            print(f"arm64-hostenv: not passed to the guest (host-local {what}): {' '.join(drop)}", file=sys.stderr)
        return " ".join(keep)

    env = {}
    for key, name, what in (("index-url", "PIP_INDEX_URL", "index"),
                            ("extra-index-url", "PIP_EXTRA_INDEX_URL", "extra index"),
                            ("find-links", "PIP_FIND_LINKS", "find-links")):
        value = remote(get(key), what)
        if value:
            env[name] = value
    for key, name in (("trusted-host", "PIP_TRUSTED_HOST"), ("proxy", "PIP_PROXY"),
                      ("retries", "PIP_RETRIES")):
        if get(key):
            env[name] = " ".join(get(key).split())
    timeout = get("timeout", "default-timeout")
    if timeout:
        env["PIP_DEFAULT_TIMEOUT"] = timeout
    if get("no-index").lower() in ("1", "true", "yes", "on"):
        print("arm64-hostenv: the host's pip has no-index set: the guest uses the index settings above",
              file=sys.stderr)
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    for name, value in env.items():
        print(f"{name}={value}")
    return 0


def main(argv: List[str]) -> int:
    if len(argv) >= 2 and argv[0] == "mirrors":
        return mirrors(argv[1])
    if argv and argv[0] == "pip":
        return pip_env(argv[1] if len(argv) > 1 else sys.executable)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
