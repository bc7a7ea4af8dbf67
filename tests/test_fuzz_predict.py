"""Property-based fuzzing of POST /predict: thousands of generated payloads, zero 5xx.

Every answer must be JSON; every rejection a 4xx with a message; a good drawing a digit. The
generators cover what arrives from real clients and from attackers: random text and bytes,
broken base64, wrong data-URL types, SVG with random paths, huge numbers, deep nesting,
entity declarations, PNG headers on garbage. The counts go into the README (bad-input suite).
"""
from __future__ import annotations

import base64
import collections
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from online_ml.learner import OnlineLearner, make_model
from online_ml.model_store import ModelStore
from online_ml.server import create_app

pytestmark = pytest.mark.integration  # a real Redis holds the model

EXAMPLES = 3000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


numbers = st.one_of(st.integers(-10**6, 10**6).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["1e308", "-1e308", "NaN", "inf", "0", "", "."]))
path_cmd = st.tuples(st.sampled_from("MLHVCQZmlhvcqzA"), st.lists(numbers, max_size=7)).map(
    lambda t: t[0] + " " + " ".join(t[1]))
path_d = st.lists(path_cmd, max_size=12).map(" ".join)
attr = st.sampled_from(['stroke="black"', 'stroke-width="8"', 'fill="none"', 'fill="#000"',
                        'stroke-width="1e9"', 'transform="scale(1e9)"', 'opacity="0"',
                        'stroke="url(#x)"', 'style="stroke:red"'])
element = st.one_of(
    st.builds(lambda d, a: f'<path d="{d}" {" ".join(a)}/>', path_d, st.lists(attr, max_size=3)),
    st.builds(lambda x, y, w, h: f'<rect x="{x}" y="{y}" width="{w}" height="{h}"/>',
              numbers, numbers, numbers, numbers),
    st.builds(lambda p: f'<polyline points="{p}" stroke="black" fill="none"/>',
              st.lists(numbers, max_size=10).map(" ".join)),
    st.sampled_from(['<text x="1" y="1">7</text>', '<image href="http://example.com/x.png"/>',
                     '<g><g><g><g/></g></g></g>', '<script>alert(1)</script>',
                     '<use href="#a"/>', '<foreignObject/>']),
)
size = st.one_of(numbers, st.sampled_from(["300", "150", "100%", "0", "-1", "99999999"]))
svg_doc = st.builds(
    lambda w, h, elems, prefix: (prefix + f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" '
                                 f'height="{h}">' + "".join(elems) + "</svg>"),
    size, size, st.lists(element, max_size=15),
    st.sampled_from(["", '<?xml version="1.0"?>',
                     '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                     '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">',
                     '<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">]>',
                     '<!DOCTYPE svg SYSTEM "file:///etc/passwd">']))
point = st.tuples(st.integers(0, 300), st.integers(0, 150))
stroke = st.lists(point, min_size=2, max_size=20).map(
    lambda pts: '<path d="M ' + " L ".join(f"{x} {y}" for x, y in pts)
    + '" stroke="black" stroke-width="6" fill="none"/>')
plausible_svg = st.lists(stroke, min_size=1, max_size=5).map(
    lambda strokes: '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
    + "".join(strokes) + "</svg>")
prefixes = st.sampled_from(["data:image/svg+xml;base64,", "image/svg+xml;base64,", "",
                            "data:image/png;base64,", "data:text/plain;base64,",
                            "data:image/svg+xml,", "data:;base64,"])
img_str = st.one_of(
    plausible_svg.map(lambda doc: "data:image/svg+xml;base64," + b64(doc.encode())),
    st.builds(lambda p, doc: p + b64(doc.encode()), prefixes, svg_doc),
    st.builds(lambda p, raw: p + b64(raw), prefixes, st.binary(max_size=300)),
    st.builds(lambda p, raw: p + b64(b"\x89PNG\r\n\x1a\n" + raw), prefixes, st.binary(max_size=200)),
    st.text(max_size=300),
    st.builds(lambda p, t: p + t, prefixes, st.text(max_size=200)),
)
body = st.one_of(
    img_str.map(lambda s: ("form", {"imgStr": s})),
    img_str.map(lambda s: ("json", {"imgStr": s})),
    st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3).map(lambda d: ("form", d)),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                 max_leaves=10).map(lambda j: ("json", j)),
    st.binary(max_size=300).map(lambda b: ("raw", b)),
)


@pytest.fixture(scope="module")
def client(redis_service):
    from online_ml.config import Settings

    settings = Settings.from_env(redis_db=1, model_key="fuzz_model")
    r = settings.redis_client()
    digits = load_digits()
    learner = OnlineLearner(make_model())
    learner.learn_many(digits.data[:600], digits.target[:600])
    ModelStore(r, settings.model_key).save(learner.model, learner.snapshot())
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app.test_client()
    app.extensions["online_ml"].close()  # stops its announcement listener
    for key in ModelStore(r, settings.model_key).project_keys():
        r.delete(key)


def answer_of(client, kind: str, data) -> int:
    """POST one payload; assert what every answer must be; return its status."""
    if kind == "form":
        resp = client.post("/predict", data=data)
    elif kind == "json":
        resp = client.post("/predict", data=json.dumps(data), content_type="application/json")
    else:
        resp = client.post("/predict", data=data, content_type="application/octet-stream")
    assert resp.status_code < 500, resp.get_data(as_text=True)[:300]
    answer = resp.get_json()
    assert isinstance(answer, dict), resp.get_data(as_text=True)[:200]
    if resp.status_code == 200:
        assert answer["success"] is True and answer["predict_result"] in range(10)
    else:
        assert answer["success"] is False and answer.get("error"), answer
    return resp.status_code


def test_predict_never_answers_5xx_and_still_predicts(client):
    """Every generated payload gets JSON and no 5xx; and the run really reached both sides: a
    server that refused everything with a 400 would pass the per-payload checks, so the counts
    are checked too (the run is derandomised: the same payloads every time)."""
    statuses: collections.Counter = collections.Counter()

    @hsettings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=body)
    def fuzz(payload):
        statuses[answer_of(client, *payload)] += 1

    fuzz()
    total = sum(statuses.values())
    print(f"\nfuzz /predict answers by status: {dict(sorted(statuses.items()))} total {total}")
    assert total >= EXAMPLES
    assert set(statuses) <= {200, 400, 413}, statuses  # bad input: 400 (413: too large)
    # measured (3000 payloads): 982 answered with a digit, 2018 refused with a 400
    assert statuses[200] >= 800, "the fuzz's plausible drawings should mostly get a digit"
    assert statuses[400] >= 1600, "the fuzz's broken payloads should be refused"
