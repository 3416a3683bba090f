"""A polite SPARQL client for Wikidata's query service (or any endpoint shaped like it).

It does what Wikimedia asks of bots (https://meta.wikimedia.org/wiki/User-Agent_policy and the query
service's usage notes): a descriptive User-Agent with a contact, few and batched queries, a time limit per
request, and retries with exponential backoff that honour 429 Too Many Requests and its Retry-After header.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import time
import urllib.error
from typing import Any, Callable

from rdflib import BNode, Literal, Namespace, URIRef
from SPARQLWrapper import JSON, POST, SPARQLWrapper
from SPARQLWrapper import __version__ as sparqlwrapper_version
from SPARQLWrapper.SPARQLExceptions import EndPointInternalError, EndPointNotFound, QueryBadFormed, SPARQLWrapperException

from .. import __version__
from ..namespaces import ONTOLOGY, OWL, P, PQ, PS, RDFS, SDO, SKOS, WD, WDT, XSD
from ..query import prologue
from ..settings import Settings

__all__ = ["EndpointError", "EndpointUnreachable", "WikidataClient", "default_user_agent", "PREFIX_HEADER"]

Progress = Callable[[str], None]

# Wikidata writes schema.org with http (schema:description), where cmc-kg uses https.
WIKIDATA_SCHEMA = Namespace("http:" + str(SDO).split(":", 1)[1])

# Sent with every query: generic endpoints (Oxigraph, Fuseki) do not predefine Wikidata's prefixes as WDQS does.
PREFIX_HEADER = prologue({prefix: str(namespace) for prefix, namespace in (
    ("wd", WD), ("wdt", WDT), ("p", P), ("ps", PS), ("pq", PQ), ("rdfs", RDFS), ("skos", SKOS),
    ("schema", WIKIDATA_SCHEMA), ("xsd", XSD), ("owl", OWL))})

_RETRY_STATUSES = {429, 500, 502, 503, 504}


class EndpointError(Exception):
    """The endpoint refused a query or kept failing after the retries."""


class EndpointUnreachable(EndpointError):
    """No connection could be made to the endpoint at all (offline, wrong host, nothing listening)."""


def default_user_agent() -> str:
    """cmc-kg's User-Agent when none is configured: tool, version, where to find it, library."""
    return (f"cmc-kg/{__version__} ({ONTOLOGY}; set CMC_KG_WIKIDATA_USER_AGENT to add your contact) "
            f"SPARQLWrapper/{sparqlwrapper_version}")


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _term(binding: dict):
    """A SPARQL JSON results binding as an rdflib term."""
    kind, value = binding["type"], binding["value"]
    if kind == "uri":
        return URIRef(value)
    if kind == "bnode":
        return BNode(value)
    if binding.get("xml:lang"):
        return Literal(value, lang=binding["xml:lang"])
    # normalize=False keeps the endpoint's lexical form ("…T00:00:00Z" stays as Wikidata writes it)
    return Literal(value, datatype=URIRef(binding["datatype"]) if binding.get("datatype") else None, normalize=False)


class WikidataClient:
    """SELECT queries against one endpoint; every answer is a list of rows of rdflib terms."""

    def __init__(self, config: Settings, progress: Progress = lambda _: None,
                 sleep: Callable[[float], None] = time.sleep):
        self.config, self.progress, self.sleep = config, progress, sleep
        self.endpoint = config.wikidata_endpoint
        self.user_agent = config.wikidata_user_agent or default_user_agent()
        self.requests = 0
        self.reached = False

    def _wrapper(self, query: str) -> SPARQLWrapper:
        sparql = SPARQLWrapper(self.endpoint, agent=self.user_agent)
        sparql.setMethod(POST)  # long VALUES lists do not fit in a URL
        sparql.setReturnFormat(JSON)
        sparql.setOnlyConneg(True)  # Accept header only: no format=json parameter that some servers refuse
        sparql.setTimeout(max(1, int(round(self.config.wikidata_timeout))))
        sparql.setQuery(PREFIX_HEADER + query)
        return sparql

    def _backoff(self, attempt: int) -> float:
        return min(self.config.wikidata_max_retry_wait, 2.0 ** attempt) * (1 + random.random() / 4)

    def select(self, query: str) -> list[dict[str, Any]]:
        """Run a SELECT; retry what can be retried; raise EndpointUnreachable or EndpointError."""
        retries = max(0, self.config.wikidata_retries)
        for attempt in range(retries + 1):
            wait, problem = None, ""
            self.requests += 1
            try:
                response = self._wrapper(query).query().response
                body = response.read()
                self.reached = True
                try:
                    data = json.loads(body)
                    return [{name: _term(value) for name, value in row.items()}
                            for row in data["results"]["bindings"]]
                except (ValueError, KeyError, TypeError) as bad:
                    raise EndpointError(f"{self.endpoint} did not answer with SPARQL JSON results: {bad}") from None
            except urllib.error.HTTPError as failure:
                self.reached = True
                detail = failure.read()[:300].decode("utf-8", "replace").strip()
                problem = f"HTTP {failure.code} {failure.reason}" + (f": {detail}" if detail else "")
                if failure.code not in _RETRY_STATUSES:
                    raise EndpointError(f"{self.endpoint} answered {problem}") from None
                wait = _retry_after(failure.headers.get("Retry-After"))
                if wait is not None and wait > self.config.wikidata_max_retry_wait:
                    raise EndpointError(f"{self.endpoint} asks to wait {wait:.0f} s (Retry-After), longer than "
                                        f"wikidata_max_retry_wait ({self.config.wikidata_max_retry_wait:g} s); "
                                        f"try again later") from None
            except QueryBadFormed as bad:
                self.reached = True
                raise EndpointError(f"{self.endpoint} refused the query as malformed: {bad}") from None
            except EndPointNotFound as missing:
                self.reached = True
                raise EndpointError(f"{self.endpoint} answered 404: is this a SPARQL endpoint? {missing}") from None
            except EndPointInternalError as failure:
                self.reached = True
                problem = f"HTTP 500: {str(failure)[:300]}"
            except SPARQLWrapperException as failure:
                self.reached = True
                raise EndpointError(f"{self.endpoint}: {failure}") from None
            except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as failure:
                reason = getattr(failure, "reason", failure)
                problem = f"no answer: {reason}"
                timed_out = isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(
                    failure, (socket.timeout, TimeoutError))
                if not self.reached and not timed_out:
                    raise EndpointUnreachable(f"cannot reach {self.endpoint}: {reason}") from None
            if attempt == retries:
                raise EndpointError(f"{self.endpoint} failed {retries + 1} times; last: {problem}")
            wait = self._backoff(attempt) if wait is None else wait
            self.progress(f"  {problem}; retrying in {wait:.1f} s ({attempt + 1}/{retries})")
            self.sleep(wait)
        raise AssertionError("unreachable")
