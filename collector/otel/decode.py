"""Pure decoding of OTLP exports into GenAI events: no network, no database, no clock of its own.

Bodies are parsed by ``opentelemetry-proto``'s generated classes (protobuf), or, for OTLP/JSON,
by ``google.protobuf.json_format`` after the one rewrite the OTLP specification demands: trace
and span ids are hex strings in OTLP/JSON, not proto3 JSON's base64.

What is read (GenAI semantic conventions, ``opentelemetry-semantic-conventions``' names):

* spans carrying ``gen_ai.provider.name`` (or the older ``gen_ai.system``) or
  ``gen_ai.operation.name``: provider, operation, ``gen_ai.response.model`` (else
  ``gen_ai.request.model``), ``gen_ai.usage.input_tokens`` (the *total* input, cache reads and
  writes included, as the conventions define it; the deprecated ``gen_ai.usage.prompt_tokens``
  as a fallback), ``gen_ai.usage.output_tokens`` (``completion_tokens``),
  ``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_creation.input_tokens`` (no TTL
  is given, so a 5-minute write, the providers' default), ``gen_ai.usage.reasoning.output_tokens``,
  ``gen_ai.response.id``, ``error.type`` and the span status;
* the ``gen_ai.client.token.usage`` histogram (sum and count per ``gen_ai.token.type``);
* attribution from span, then resource, attributes: ``service.name``, ``service.namespace``,
  ``deployment.environment.name`` (or ``deployment.environment``) and the configured team and
  project attributes.

Nothing else is copied. Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``,
system instructions, tool arguments, the older ``gen_ai.prompt``/``gen_ai.completion``) and span
events are dropped here, and any attribute matching the deny list is never read, whatever the
attribution settings say; both are counted.

Agent and tool spans (``invoke_agent``, ``create_agent``, ``execute_tool``, workflows) are
ignored: frameworks put the *sum of their child model calls* on them, so counting them would
count the same tokens twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.core.settings import Settings

TOKEN_METRIC = "gen_ai.client.token.usage"  # noqa: S105  (a metric name, not a secret)
#: Operations whose usage repeats their children's model calls (see the module docstring).
AGGREGATE_OPERATIONS = frozenset({"invoke_agent", "create_agent", "execute_tool", "invoke_workflow"})
#: Message content, whatever the deny list says (fnmatch patterns).
CONTENT_PATTERNS = (
    "gen_ai.input.messages*",
    "gen_ai.output.messages*",
    "gen_ai.system_instructions*",
    "gen_ai.prompt*",
    "gen_ai.completion*",
    "gen_ai.tool.call.arguments*",
    "gen_ai.tool.call.result*",
    "gen_ai.tool.definitions*",
    "llm.prompts*",
    "llm.completions*",
    "llm.input_messages*",
    "llm.output_messages*",
    "input.value",
    "output.value",
    "*.content",
)
#: GenAI provider names (``gen_ai.provider.name`` / ``gen_ai.system`` values) -> catalogue ids.
PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws_bedrock",
    "azure.ai.openai": "azure_openai",
    "az.ai.openai": "azure_openai",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "x_ai": "xai",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
}
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
_MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
_INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
_CACHE_WRITE = "gen_ai.usage.cache_creation.input_tokens"
_REASONING = "gen_ai.usage.reasoning.output_tokens"
_ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")
_USAGE_KEYS = frozenset((*_INPUT_KEYS, *_OUTPUT_KEYS, _CACHE_READ, _CACHE_WRITE, _REASONING))
#: Every span or point attribute the decoder reads (besides the configured attribution ones).
_READ = frozenset(
    (
        *_PROVIDER_KEYS,
        *_MODEL_KEYS,
        *_USAGE_KEYS,
        "gen_ai.operation.name",
        "gen_ai.response.id",
        "gen_ai.token.type",
        "error.type",
    )
)
_DELTA, _CUMULATIVE = 1, 2
#: ``gen_ai.token.type`` values ("completion" is the older name of "output").
_TOKEN_TYPES = {"input": "input", "output": "output", "completion": "output"}
_STATUS_ERROR = 2
#: Timestamps further than this from the receiver's clock are refused (a broken or hostile clock).
MAX_SKEW = timedelta(days=1)
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
_TEXT_LIMIT = 255
_NAME_CACHE_LIMIT = 10_000


class DecodeFailure(ValueError):
    """The body is not a valid OTLP export of the declared encoding (HTTP 400)."""


@dataclass(frozen=True)
class Policy:
    """What the decoder may read: attribution attributes and the deny list (from settings)."""

    team_attributes: tuple[str, ...] = ("team", "service.namespace")
    project_attributes: tuple[str, ...] = ("project", "service.name")
    deny: tuple[str, ...] = ()
    _names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the settings describe (comma-separated lists, blanks ignored)."""

        def split(text: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in text.split(",") if p.strip())

        return cls(
            split(settings.otel_team_attributes),
            split(settings.otel_project_attributes),
            split(settings.otel_deny_attributes),
        )

    def classify(self, name: str) -> str:
        """``content``, ``denied``, ``read`` (a name the decoder uses) or ``skip`` (cached: names repeat)."""
        found = self._names.get(name)
        if found is not None:
            return found
        if any(fnmatchcase(name, p) for p in CONTENT_PATTERNS):
            found = "content"
        elif any(fnmatchcase(name.lower(), p.lower()) for p in self.deny):
            found = "denied"
        elif name in _READ or name in self.team_attributes or name in self.project_attributes:
            found = "read"
        else:
            found = "skip"
        if len(self._names) < _NAME_CACHE_LIMIT:  # a hostile sender could invent names forever
            self._names[name] = found
        return found


@dataclass
class Counts:
    """What one export contained, for the receiver's ``/metrics`` and the OTLP partial success."""

    spans: int = 0
    genai: int = 0
    ignored: int = 0
    rejected: int = 0
    dropped_content: int = 0
    dropped_denied: int = 0
    dropped_events: int = 0
    points: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        """Count one refused span or data point under ``reason``."""
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def message(self) -> str:
        """The OTLP ``partial_success.error_message``: why items were refused (no data echoed)."""
        return "; ".join(f"{n} rejected: {r}" for r, n in sorted(self.reasons.items()))


# -- bodies -------------------------------------------------------------------------------------


def _hex_ids_to_base64(obj: Any, keys: frozenset[str]) -> Any:
    """OTLP/JSON ids are hex; proto3 JSON expects base64 for ``bytes``: convert in place."""
    import base64

    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                try:
                    obj[k] = base64.b64encode(bytes.fromhex(v)).decode()
                except ValueError as exc:
                    raise DecodeFailure(f"{k} is not a hex id") from exc
            else:
                _hex_ids_to_base64(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            _hex_ids_to_base64(v, keys)
    return obj


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def parse(body: bytes, message: Message, *, json_body: bool) -> Message:
    """Fill ``message`` from a protobuf or OTLP/JSON body.

    Raises:
        DecodeFailure: malformed protobuf or JSON, or a JSON document of the wrong shape.
    """
    try:
        if json_body:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise DecodeFailure("the JSON body is not an object")
            json_format.ParseDict(_hex_ids_to_base64(doc, _ID_KEYS), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except DecodeFailure:
        raise
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as exc:
        raise DecodeFailure(f"not a valid {'OTLP/JSON' if json_body else 'OTLP protobuf'} body") from exc
    return message


def parse_traces(body: bytes, *, json_body: bool) -> ExportTraceServiceRequest:
    """An ``ExportTraceServiceRequest`` from a body (see :func:`parse`)."""
    request = ExportTraceServiceRequest()
    parse(body, request, json_body=json_body)
    return request


def parse_metrics(body: bytes, *, json_body: bool) -> ExportMetricsServiceRequest:
    """An ``ExportMetricsServiceRequest`` from a body (see :func:`parse`)."""
    request = ExportMetricsServiceRequest()
    parse(body, request, json_body=json_body)
    return request


# -- attributes ---------------------------------------------------------------------------------


def _scalar(value: AnyValue) -> str | int | float | bool | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    return None  # arrays, maps and bytes carry nothing the receiver reads


def read_attributes(
    attributes: Iterable[KeyValue], policy: Policy, counts: Counts, *, every: bool = False
) -> dict[str, Any]:
    """The scalar attributes the decoder uses (``every``: all allowed ones).

    Content and denied attributes are counted and dropped, never read.
    """
    out: dict[str, Any] = {}
    for kv in attributes:
        kind = policy.classify(kv.key)
        if kind == "read" or (every and kind == "skip"):
            out[kv.key] = _scalar(kv.value)
        elif kind == "content":
            counts.dropped_content += 1
        elif kind == "denied":
            counts.dropped_denied += 1
    return out


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str:
    """A key column's text: strings and integers only, control characters removed, bounded."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    text = str(value)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable())
    return text.strip()[:limit]


def _first(keys: Iterable[str], *scopes: dict[str, Any]) -> str:
    for key in keys:
        for attrs in scopes:
            value = _text(attrs.get(key))
            if value:
                return value
    return ""


def _tokens(value: Any) -> int | None:
    """A token count: a non-negative integer (an integral double is accepted); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def provider_id(name: str) -> str:
    """The catalogue id of a GenAI provider name (others kept, lower-cased)."""
    name = name.strip().lower()
    return PROVIDER_IDS.get(name, name[:64])


@dataclass(frozen=True)
class Resource:
    """Attribution that one resource gives all its spans and points."""

    attrs: dict[str, Any]
    fingerprint: str
    service: str
    environment: str
    team: str
    project: str


def read_resource(attributes: Iterable[KeyValue], policy: Policy, counts: Counts) -> Resource:
    """The resource's allowed attributes and a fingerprint of them (same process, same value)."""
    attrs = read_attributes(attributes, policy, counts, every=True)
    canonical = json.dumps(sorted((k, repr(v)) for k, v in attrs.items()), separators=(",", ":"))
    fp = hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
    return Resource(
        attrs,
        fp,
        _first(("service.name",), attrs),
        _first(_ENVIRONMENT_KEYS, attrs)[:64],
        _first(policy.team_attributes, attrs),
        _first(policy.project_attributes, attrs),
    )


def _attribution(names: tuple[str, ...], attrs: dict[str, Any], fallback: str) -> str:
    """The first of ``names`` present on the span (or point), else the resource's value."""
    for name in names:
        if name in attrs:
            value = _text(attrs[name])
            if value:
                return value
    return fallback


def _time(ns: int, now: datetime) -> datetime | None:
    if ns <= 0:
        return None
    ts = datetime.fromtimestamp(ns / 1e9, UTC)
    return ts if EARLIEST <= ts <= now + MAX_SKEW else None


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


# -- spans --------------------------------------------------------------------------------------


def span_events(request: ExportTraceServiceRequest, policy: Policy, now: datetime, counts: Counts) -> Iterator[dict]:
    """One event (a dict of ``otel_events`` columns, not yet priced) per GenAI model-call span."""
    for resource_spans in request.resource_spans:
        resource = read_resource(resource_spans.resource.attributes, policy, counts)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                counts.spans += 1
                counts.dropped_events += len(span.events)
                event = _span_event(span, resource, policy, now, counts)
                if event is not None:
                    counts.genai += 1
                    yield event


def _span_event(span: Any, resource: Resource, policy: Policy, now: datetime, counts: Counts) -> dict | None:
    attrs = read_attributes(span.attributes, policy, counts)
    provider = _first(_PROVIDER_KEYS, attrs)
    operation = _text(attrs.get("gen_ai.operation.name"), 64)
    if not provider and not operation:
        counts.ignored += 1  # not a GenAI span (HTTP, database ...)
        return None
    if operation in AGGREGATE_OPERATIONS:
        counts.ignored += 1
        return None
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        counts.reject("a span needs a 16-byte trace id and an 8-byte span id")
        return None
    ts = _time(span.end_time_unix_nano or span.start_time_unix_nano, now)
    if ts is None:
        counts.reject(f"span time missing, before {EARLIEST:%Y} or more than a day ahead")
        return None
    usage = _span_usage(attrs)
    if isinstance(usage, str):
        counts.reject(usage)
        return None
    known, inp, read, write, out, reasoning = usage
    return {
        "id": event_id(ts, span.trace_id.hex() + span.span_id.hex()),
        "signal": "span",
        "ts": ts,
        "window_start": ts,
        "hour": _hour(ts),
        "resource_fp": resource.fingerprint,
        "provider": provider_id(provider) if provider else "unknown",
        "operation": operation,
        "model": _first(_MODEL_KEYS, attrs),
        "service": resource.service,
        "environment": resource.environment,
        "team": _attribution(policy.team_attributes, attrs, resource.team),
        "project": _attribution(policy.project_attributes, attrs, resource.project),
        "input_tokens": inp,
        "cache_read_tokens": read,
        "cache_write_5m_tokens": write,
        "cache_write_1h_tokens": 0,
        "output_tokens": out,
        "reasoning_tokens": reasoning,
        "requests": 1,
        "errors": int(span.status.code == _STATUS_ERROR or bool(attrs.get("error.type"))),
        "response_id": _text(attrs.get("gen_ai.response.id"), 128),
        "usage_known": known,
    }


def _span_usage(attrs: dict[str, Any]) -> tuple[bool, int, int, int, int, int] | str:
    """``(known, input, cache_read, cache_write, output, reasoning)``, or why they are refused.

    Design rule 4 is checked here, never clamped: cache reads and writes are part of input, and
    reasoning part of output. An instrumentation passing Anthropic's *uncached* input through
    breaks the first and is refused, with the reason in the OTLP partial success.
    """
    present = [k for k in _USAGE_KEYS if k in attrs]
    values: dict[str, int] = {}
    for key in present:
        count = _tokens(attrs[key])
        if count is None:
            return f"{key} is not a non-negative integer"
        values[key] = count
    inp = next((values[k] for k in _INPUT_KEYS if k in values), 0)
    out = next((values[k] for k in _OUTPUT_KEYS if k in values), 0)
    read, write, reasoning = values.get(_CACHE_READ, 0), values.get(_CACHE_WRITE, 0), values.get(_REASONING, 0)
    if read + write > inp:
        return "cache read and write tokens exceed gen_ai.usage.input_tokens (input must include them)"
    if reasoning > out:
        return "reasoning tokens exceed gen_ai.usage.output_tokens (output must include them)"
    return bool(present), inp, read, write, out, reasoning


# -- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One data point of ``gen_ai.client.token.usage`` for one token type."""

    series: str  # resource + attributes (token type included) + start time: one cumulative series
    group: str  # resource + attributes without token type or start: the points of one set of calls
    token_type: str
    cumulative: bool
    start_ns: int
    time_ns: int
    total: int
    calls: int
    event: dict  # the event columns the point's group shares (attribution, provider, model ...)


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def metric_points(
    request: ExportMetricsServiceRequest, policy: Policy, now: datetime, counts: Counts
) -> Iterator[Point]:
    """Every ``gen_ai.client.token.usage`` histogram point (other metrics are ignored)."""
    for resource_metrics in request.resource_metrics:
        resource = read_resource(resource_metrics.resource.attributes, policy, counts)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if metric.name != TOKEN_METRIC or kind not in ("histogram", "exponential_histogram"):
                    continue
                data = getattr(metric, kind)
                if data.aggregation_temporality not in (_DELTA, _CUMULATIVE):
                    counts.reject("aggregation temporality unspecified")
                    continue
                for dp in data.data_points:
                    counts.points += 1
                    point = _point(dp, data.aggregation_temporality == _CUMULATIVE, resource, policy, now, counts)
                    if point is not None:
                        yield point


def _point(
    dp: Any, cumulative: bool, resource: Resource, policy: Policy, now: datetime, counts: Counts
) -> Point | None:
    attrs = read_attributes(dp.attributes, policy, counts)
    token_type = _TOKEN_TYPES.get(_text(attrs.pop("gen_ai.token.type", ""), 16), "")
    if not token_type:
        counts.reject("gen_ai.token.type is neither input nor output")
        return None
    ts = _time(dp.time_unix_nano, now)
    if ts is None or (dp.start_time_unix_nano and dp.start_time_unix_nano > dp.time_unix_nano):
        counts.reject("point time missing, out of range or before its start")
        return None
    if not dp.HasField("sum") or dp.sum < 0 or dp.sum != dp.sum:
        counts.reject("a token histogram point needs a non-negative sum")
        return None
    provider = _first(_PROVIDER_KEYS, attrs)
    key_attrs = sorted((k, repr(v)) for k, v in attrs.items())
    # The SDKs start each series at its first measurement, so a call's input and output series
    # have different start times: the group (one event per export) leaves the start out.
    group = _digest(resource.fingerprint, key_attrs)
    event = {
        "signal": "metric",
        "resource_fp": resource.fingerprint,
        "provider": provider_id(provider) if provider else "unknown",
        "operation": _text(attrs.get("gen_ai.operation.name"), 64),
        "model": _first(_MODEL_KEYS, attrs),
        "service": resource.service,
        "environment": resource.environment,
        "team": _attribution(policy.team_attributes, attrs, resource.team),
        "project": _attribution(policy.project_attributes, attrs, resource.project),
        "errors": int(bool(attrs.get("error.type"))),
    }
    return Point(
        series=_digest(group, token_type, dp.start_time_unix_nano),
        group=group,
        token_type=token_type,
        cumulative=cumulative,
        start_ns=int(dp.start_time_unix_nano),
        time_ns=int(dp.time_unix_nano),
        total=round(dp.sum),
        calls=int(dp.count),
        event=event,
    )


def time_of(ns: int) -> datetime:
    """An aware UTC time from OTLP nanoseconds."""
    return datetime.fromtimestamp(ns / 1e9, UTC)


def event_id(ts: datetime, unique: str) -> str:
    """The event key: the hour (8 hex digits), then what OTLP makes unique (trace and span id).

    A retried export repeats both, so it still lands once; the hour in front keeps the primary
    key's index growing at its end instead of at random places (the receiver benchmark: random
    trace ids slow inserts as the table grows).
    """
    return f"{int(ts.timestamp()) // 3600:08x}{unique}"


def hour_of(ts: datetime) -> datetime:
    """The UTC hour a time falls in."""
    return _hour(ts)
