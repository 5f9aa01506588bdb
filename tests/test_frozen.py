"""core/frozen.quick_init: the same values, defaults and frozenness as the dataclass's own
__init__, and a refusal (at import) for what it cannot do."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from modeldeck.core.frozen import build, quick_init
from modeldeck.core.metrics import Rates
from modeldeck.core.promql import Matcher, PromReading
from modeldeck.core.snapshot import EndpointSnapshot


@pytest.mark.parametrize("cls", [EndpointSnapshot, Rates, PromReading, Matcher])
def test_quick_init_is_the_dataclass_init(cls: type) -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain(cls):  # type: ignore[valid-type, misc]
        pass  # the generated __init__, for comparison (a subclass gets its own)

    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    params = inspect.signature(cls.__init__).parameters
    assert list(params)[1:] == [f.name for f in fields]
    assert [n for n, p in params.items() if p.default is inspect.Parameter.empty][1:] == required
    values = {name: f"v{i}" for i, name in enumerate(required)}
    quick, plain = cls(**values), Plain(**values)
    assert dataclasses.astuple(quick) == dataclasses.astuple(plain)
    assert list(vars(quick)) == [f.name for f in fields]
    positional = cls(*values.values())
    assert positional == quick and hash(positional) == hash(quick)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(quick, fields[0].name, "changed")
    with pytest.raises(TypeError):
        cls()  # the required fields stay required


def test_quick_init_refuses_what_it_cannot_do() -> None:
    @dataclasses.dataclass
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class Factory:
        a: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class KeywordOnly:
        a: int

    @dataclasses.dataclass(frozen=True)
    class SelfField:
        self: int  # legal for a dataclass (its __init__ names itself otherwise), not here

    for cls in (Mutable, Factory, Post, KeywordOnly, SelfField):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_build_is_the_constructor_for_names_read_from_a_file() -> None:
    """build(cls, values) is cls(**values) for names parsed from JSON (not interned), ignoring
    names that are not fields; a missing required field raises as the constructor does."""
    import orjson

    snap = EndpointSnapshot("e", "m", "production", 1.5, 2.0, "UP", "ready", request_rate=3.0,
                            served_versions=("2",))
    values = orjson.loads(orjson.dumps({**vars(snap), "served_versions": ["2"], "taken_at_utc": "x",
                                        "_source": "report"}))
    values["served_versions"], values["version_rates"] = ("2",), ()
    got = build(EndpointSnapshot, values)
    assert got == snap and type(got) is EndpointSnapshot
    assert list(vars(got)) == [f.name for f in dataclasses.fields(EndpointSnapshot)]
    assert build(EndpointSnapshot, {k: v for k, v in values.items() if k in ("endpoint", "model", "environment",
                 "taken_at", "duration_ms", "status", "reason")}).request_rate is None  # the defaults
    del values["reason"]
    with pytest.raises(TypeError, match="reason"):
        build(EndpointSnapshot, values)
    assert EndpointSnapshot.from_dict(snap.to_dict()) == snap
