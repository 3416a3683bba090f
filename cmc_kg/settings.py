"""Every setting of every cmc-kg command, in one table, and the paths of the data and the build they lead to."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "REPO_ROOT", "Paths", "Settings"]

INSTALLED_ROOT = Path(__file__).resolve().parent  # a wheel's data: cmc_kg/{ontology,graph,queries}
REPO_ROOT = INSTALLED_ROOT.parent  # the checkout, when cmc_kg runs from one
ENV_PREFIX = "CMC_KG_"  # not CMC_: Kubernetes sets CMC_PORT=tcp://... for a Service named cmc
# Variables with the prefix that are not settings: push's credentials, which no config file or flag may hold.
PUSH_USER_VARIABLE, PUSH_PASSWORD_VARIABLE = f"{ENV_PREFIX}PUSH_USER", f"{ENV_PREFIX}PUSH_PASSWORD"


@dataclass(frozen=True)
class Paths:
    """Where one run of cmc-kg reads its sources and writes its build; tests point them at temporary copies."""

    root: Path = field(default_factory=lambda: default_root())
    build_dir: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.build_dir is None:
            object.__setattr__(self, "build_dir", _user_build_dir() if self.installed else self.root / "build")

    @property
    def installed(self) -> bool:
        """True when the data is the copy installed with the package, which commands must not rewrite."""
        return self.root.resolve() == INSTALLED_ROOT

    @property
    def ontology_file(self) -> Path:
        return self.root / "ontology" / "cmc.ttl"

    @property
    def shapes_dir(self) -> Path:
        return self.root / "ontology" / "shapes"

    @property
    def checks_dir(self) -> Path:
        return self.root / "ontology" / "checks"

    @property
    def graph_dir(self) -> Path:
        return self.root / "graph"

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    @property
    def queries_dir(self) -> Path:
        return self.root / "queries"

    @property
    def dump_file(self) -> Path:
        """The build's one output of record: every named graph as canonical, sorted N-Quads."""
        return self.build_dir / "cmc-kg.nq"

    @property
    def report_file(self) -> Path:
        return self.build_dir / "build-report.json"


def default_root() -> Path:
    """The checkout cmc-kg runs from (an editable install, the tests), else the data installed with the wheel."""
    return REPO_ROOT if (REPO_ROOT / "ontology" / "cmc.ttl").is_file() else INSTALLED_ROOT


def _user_build_dir() -> Path:
    """The build of the installed data: that data is the same from every folder and may be read-only, so its
    build is one per user and version, in the user's data folder, found wherever a command runs."""
    from . import __version__

    data_home = os.environ.get("XDG_DATA_HOME") or (
        os.environ.get("LOCALAPPDATA") if os.name == "nt" else None) or Path.home() / ".local" / "share"
    return Path(data_home) / "cmc-kg" / __version__ / "build"


# The commands that read or write a build (their --build-dir); every command has --root.
BUILD_COMMANDS = ("build", "query", "stats", "export", "push", "serve", "link wikidata", "refresh untc", "release")
WIKIDATA_COMMANDS = ("link wikidata", "enrich wikidata")


def _setting(default, help: str, env=None, commands=("serve",), flag=None):
    """A setting: its default, the help the CLI and README show, how to read it from a string, the commands
    whose options it is (None: all) and its flag when that is not --name-with-dashes."""
    return field(default=default, metadata={"help": help, "parse": env or type(default), "commands": commands,
                                            "flag": flag})


def _words(text: str) -> tuple[str, ...]:
    return tuple(word for word in text.replace(",", " ").split() if word)


def _yes_no(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _base_url(text: str) -> str:
    """An absolute http(s) URL with a host and no query, fragment or user; empty: from host and port."""
    import urllib.parse

    text = text.strip()
    if not text:
        return ""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or "@" in parts.netloc or any(c.isspace() or c in '<>"{}|\\^`' for c in text):
        raise ValueError(f"not an absolute http(s) URL without query or fragment: {text!r}")
    parts.port  # noqa: B018  (raises ValueError on a malformed port)
    return text.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Settings of every command: defaults < config file (TOML) < CMC_KG_* environment variables < flags.

    A setting belongs to the commands its metadata names, which get a flag for it (cmc_kg/cli.py); the config
    file and the variables may hold any setting of any command, so one file serves them all.
    """

    root: str = _setting("", "Folder holding the data (ontology/, graph/, queries/), e.g. a checkout of cmc-kg; "
                             "empty: the checkout cmc-kg runs from, else the data installed with it.", commands=None)
    build_dir: str = _setting("", "Folder of the build (default: build/ under root; for the installed data: "
                                  "cmc-kg/<version>/build in the user's data folder, $XDG_DATA_HOME or "
                                  "~/.local/share).", commands=BUILD_COMMANDS)
    host: str = _setting("127.0.0.1", "Interface to listen on; the default answers only this machine.")
    port: int = _setting(8000, "TCP port to listen on.")
    base_url: str = _setting("", "Public URL of the server (e.g. https://cmc.example.org), used in every absolute URL it "
                                 "writes (VoID, the service description); empty: http://host:port. Never taken from "
                                 "the request's Host header.", _base_url)
    threads: int = _setting(16, "HTTP threads; each waits on one query at a time.")
    workers: int = _setting(2, "Query processes; each holds the graph in memory and is killed if its query runs too long.")
    query_timeout: float = _setting(10.0, "Seconds a query may run; past it the query is stopped and answered with 503.")
    max_rows: int = _setting(100_000, "Most solutions or triples one answer holds; a longer answer is cut and says "
                                      "so in the X-SPARQL-MaxRows header (readable by scripts on other origins) "
                                      "and on the query page. The whole graph is about 30,000 triples, so only a "
                                      "runaway query reaches it; max_answer_bytes bounds memory.")
    max_request_bytes: int = _setting(1_000_000, "Largest request body or query string; a larger one gets 413.")
    max_answer_bytes: int = _setting(16 << 20, "Largest answer in bytes, as serialised; a query whose answer would "
                                               "be larger gets 413 (ask for fewer or shorter results).")
    max_nesting: int = _setting(256, "How deeply a query may nest (brackets, and chained BIND, FILTER, OPTIONAL, "
                                     "UNION, operators or path steps, which become nested trees); a deeper "
                                     "query gets 400 before it reaches the engine, whose stack it could overflow.")
    service_allowlist: tuple[str, ...] = _setting((), "SPARQL endpoints a query may call with SERVICE "
                                                      "(space- or comma-separated IRIs); empty: none.", _words)
    quick_lane: float = _setting(1.0, "Seconds a query may run on one extra worker kept for quick queries when every "
                                      "other worker is busy; a query that runs longer there moves to the regular "
                                      "queue. 0: no quick lane.")
    worker_memory: int = _setting(2048, "Most memory (address space, MiB) a query process may use; a query that needs "
                                        "more is stopped with 503 and its process replaced. 0: no limit.")
    reload_interval: float = _setting(2.0, "Seconds between looks at the build's dump (with `store`: at the build id "
                                           "the last `cmc-kg push` recorded); a new build is then served without a "
                                           "restart and without dropping a request. 0: never reload.")
    cache_entries: int = _setting(2048, "Answers kept in memory, keyed by query and build; 0 turns the cache off.")
    cache_bytes: int = _setting(64 << 20, "Most bytes of answers the cache keeps; the least recently used go first.")
    store: str = _setting("", "Query URL of an existing SPARQL engine loaded with `cmc-kg push` to serve instead "
                              "of the embedded store (Oxigraph server, Fuseki, Virtuoso, QLever); empty: embedded.")
    fair_share: bool = _setting(True, "Share the query workers fairly between clients (client_queries, heavy_seconds, "
                                      "client_budget); off: first come, first served.", _yes_no)
    client_queries: int = _setting(6, "Most queries one client (address) may have running or waiting; one more gets "
                                      "429 with Retry-After.")
    heavy_seconds: float = _setting(5.0, "Query seconds in the last minute past which a client is heavy: heavy clients' "
                                         "queries together get all workers but one, kept for the others.")
    client_budget: float = _setting(30.0, "Query seconds per minute past which a heavy client's query is refused "
                                          "(429 with Retry-After) instead of waiting its turn when the workers are busy.")
    unthrottled: tuple[str, ...] = _setting(("127.0.0.1", "::1"), "Client addresses or networks the per-client limits "
                                                                   "do not apply to; by default this machine itself.",
                                            _words)
    trusted_proxy: str = _setting("", "Address of a reverse proxy whose X-Forwarded-For (and -Proto) header names the "
                                      "client; * trusts every peer; empty: the peer is the client.")
    connection_limit: int = _setting(500, "Most open HTTP connections; past it new ones wait until one closes.")
    client_connections: int = _setting(20, "Most open connections from one client address (not the trusted proxy "
                                           "or unthrottled ones); one more is answered 429 and closed. 0: no limit.")
    request_read_timeout: float = _setting(10.0, "Seconds a client has to send a request's headers from its first "
                                                 "byte (a new connection: from connecting), and again for its body; "
                                                 "a slower connection is closed. 0: no limit.")

    wikidata_endpoint: str = _setting("https://query.wikidata.org/sparql",
                                      "SPARQL endpoint that `cmc-kg link` and `cmc-kg enrich` query for Wikidata.",
                                      commands=WIKIDATA_COMMANDS, flag="--endpoint")
    wikidata_user_agent: str = _setting("", "User-Agent sent to the Wikidata endpoint; Wikimedia asks for a tool name "
                                            "and a contact (e-mail or URL). Empty: cmc-kg/<version> with the project's URL.",
                                        commands=WIKIDATA_COMMANDS, flag="--user-agent")
    wikidata_batch_size: int = _setting(50, "Codes, labels or items per query (VALUES) sent to the Wikidata endpoint.",
                                        commands=WIKIDATA_COMMANDS, flag="--batch-size")
    wikidata_timeout: float = _setting(60.0, "Seconds one request to the Wikidata endpoint may take.",
                                       commands=WIKIDATA_COMMANDS, flag="--timeout")
    wikidata_retries: int = _setting(4, "Retries of a failed request (429, 5xx, network), with exponential backoff.",
                                     commands=WIKIDATA_COMMANDS, flag="--retries")
    wikidata_max_retry_wait: float = _setting(120.0, "Longest wait a Retry-After header may ask for; "
                                                     "a longer one stops the run.",
                                              commands=WIKIDATA_COMMANDS, flag="--max-retry-wait")

    def __post_init__(self):
        _base_url(self.base_url)  # a malformed public URL stops the server before it starts
        if self.root and not Paths(Path(self.root), Path()).ontology_file.is_file():
            raise ValueError(f"setting 'root': {self.root} holds no ontology/cmc.ttl; give a checkout of cmc-kg")

    @classmethod
    def load(cls, config_file: Path | None = None, environ: dict[str, str] | None = None, **flags) -> "Settings":
        """Merge the four layers; raise ValueError naming any unknown or malformed setting.

        The config file and the flags are strict; of the environment only CMC_KG_* variables are read (an
        unknown one is refused), the rest belongs to other programs.
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}

        def put(name: str, value, origin: str):
            if name not in known:
                raise ValueError(f"unknown setting {name!r} in {origin}; known: {', '.join(sorted(known))}")
            parse = known[name].metadata["parse"]
            kind: Any = type(known[name].default)  # every setting has a default (_setting)
            try:
                values[name] = parse(value) if isinstance(value, str) else (
                    tuple(value) if isinstance(value, list) else kind(value))
            except (TypeError, ValueError):
                raise ValueError(f"setting {name!r} in {origin}: {value!r} is not a valid "
                                 f"{kind.__name__}") from None

        if config_file is not None:
            with open(config_file, "rb") as handle:
                for name, value in tomllib.load(handle).items():
                    put(name, value, str(config_file))
        for variable, value in (os.environ if environ is None else environ).items():
            if variable.startswith(ENV_PREFIX) and variable not in (PUSH_USER_VARIABLE, PUSH_PASSWORD_VARIABLE):
                put(variable[len(ENV_PREFIX):].lower(), value, f"environment variable {variable}")
        for name, value in flags.items():
            if value is not None:
                put(name, value, "command-line flags")
        return cls(**values)  # its checks raise ValueError too

    def paths(self) -> Paths:
        root = Path(self.root) if self.root else default_root()
        return Paths(root, Path(self.build_dir)) if self.build_dir else Paths(root)

    @property
    def public_url(self) -> str:
        """``base_url`` without a trailing slash, else ``http://host:port`` (an IPv6 host in brackets)."""
        if self.base_url:
            return _base_url(self.base_url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def of(cls, command: str) -> list:
        """The settings that are options of ``command`` ("serve", "link wikidata", ...), in table order."""
        return [f for f in fields(cls) if f.metadata["commands"] is None or command in f.metadata["commands"]]


def command_options(command: str):
    """Decorate a click command with --config and a flag for each of its settings; it is then called with the
    merged ``Settings`` as its first argument (a bad setting: a usage error before it runs)."""
    import functools

    import click

    own = Settings.of(command)

    def decorate(function):
        @functools.wraps(function)
        def run(config_file, **arguments):
            flags = {setting.name: arguments.pop(setting.name) for setting in own}
            try:
                settings = Settings.load(Path(config_file) if config_file else None, **flags)
            except ValueError as bad:
                raise click.UsageError(str(bad)) from None
            return function(settings, **arguments)

        for setting in reversed(own):
            flag = setting.metadata["flag"] or "--" + setting.name.replace("_", "-")
            help = setting.metadata["help"]
            if isinstance(setting.default, bool):
                run = click.option(f"{flag}/--no-{flag[2:]}", setting.name, default=None, help=help)(run)
            else:
                kind = type(setting.default) if type(setting.default) in (int, float) else str
                run = click.option(flag, setting.name, default=None, type=kind, help=help)(run)
        return click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
                            help=f"A TOML file of settings (overridden by {ENV_PREFIX}* environment variables "
                                 "and by flags).")(run)
    return decorate
