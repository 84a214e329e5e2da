"""Render limits: a template that would hang or eat memory fails fast, naming template, part,
line, the limit and its value; preview, preflight and the worker share that path."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.errors import TemplateRenderError
from campaigns.content.render_limits import RenderLimits, configure_limits, current_limits
from campaigns.content.rendering import build_context, compile_template
from campaigns.settings import load_settings
from tests.helpers import make_campaign

# Without the guards each of these runs for minutes or allocates gigabytes.
pytestmark = pytest.mark.timeout(30)

CONTEXT = build_context(email="anna@example.it", attributes={"nome": "Anna"},
                        campaign_name="natale", unsubscribe_url="https://u.test/x")


@pytest.fixture(autouse=True)
def limits() -> Iterator[None]:
    """Size and range limits small; the time limit long, so on a loaded machine a size test
    is never stopped by the clock first (the time tests shorten it: `short_time_limit`)."""
    before = current_limits()
    configure_limits(RenderLimits(max_render_s=60, max_part_bytes=200_000, max_range=1_000))
    yield
    configure_limits(before)


def short_time_limit() -> None:
    configure_limits(RenderLimits(max_render_s=0.5, max_part_bytes=200_000, max_range=1_000))


def render_error(html: str) -> TemplateRenderError:
    template = compile_template("hostile", "Ciao {{ contact.nome }}", html, None)
    started = time.monotonic()
    with pytest.raises(TemplateRenderError) as info:
        template.render(CONTEXT)
    assert time.monotonic() - started < 5
    err = info.value
    assert (err.template, err.part) == ("hostile", "html")
    return err


def test_nested_loops_run_out_of_time_at_their_line() -> None:
    short_time_limit()
    err = render_error("<p>ok</p>\n{% for i in range(1000) %}{% for j in range(1000) %}"
                       "{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}")
    assert err.line == 2 and "[templates] max_render_s = 0.5" in str(err)


def test_loop_over_a_string_without_range_runs_out_of_time() -> None:
    short_time_limit()
    err = render_error("{% set s = 'x' * 100000 %}\n{% for a in s %}{% for b in s %}"
                       "{% endfor %}{% endfor %}")
    assert err.line == 2 and "max_render_s" in str(err)


def test_exponential_macro_recursion_runs_out_of_time() -> None:
    short_time_limit()
    err = render_error("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                       "{% endmacro %}\n{{ f(60) }}")
    assert "max_render_s" in str(err)


def test_range_over_the_cap() -> None:
    err = render_error("<p>\n{% for i in range(100000) %}{{ i }}{% endfor %}</p>")
    assert err.line == 2 and "range of 100,000 items" in str(err)
    assert "[templates] max_range = 1000" in str(err)


@pytest.mark.parametrize("html", ["{{ lipsum(1000000) }}", "{{ lipsum(1, max=100000000) }}"])
def test_lipsum_is_capped(html: str) -> None:
    assert "lipsum is limited to 100 paragraphs" in str(render_error(html))


@pytest.mark.parametrize("html", ["{{ 'x' * 10**8 }}", "{% set l = [0] * 10**9 %}",
                                  "{{ 10 * 'ab' * 10**7 }}"])
def test_repetition_is_refused_before_allocating(html: str) -> None:
    err = render_error(html)
    assert "'*' repetition" in str(err) and "[templates] max_part_bytes = 200000" in str(err)


@pytest.mark.parametrize("html", ["{{ 10 ** (10 ** 8) }}",
                                  "{% set x = 10 ** 3000 %}{% set x = x * x %}{% set x = x * x %}"
                                  "{% set x = x * x %}{% set x = x * x %}{% set x = x * x %}"])
def test_huge_numbers_are_refused(html: str) -> None:
    assert "would make a number over 100,000 bits" in str(render_error(html))


@pytest.mark.parametrize("html", [
    "{% set s = 'x' * 150000 %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}",
    "{% set s = 'x' * 150000 %}{% set s = s + s %}{% set s = s + s %}",
    "{{ 'x'.ljust(10**9) }}", "{{ 'x'|center(10**9) }}", "{{ '\t'.expandtabs(10**9) }}",
    "{{ '{:>999999999}'.format(1) }}", "{{ '{:>{}}'.format(1, 10**9) }}",
    "{{ '%*d' % (10**9, 1) }}", "{{ '%*d'|format(10**9, 1) }}",
    "{% set s = 'x' * 100000 %}{{ s.replace('', s) }}",
    "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "{% set s = 'x' * 100000 %}{{ s.join(range(1000)) }}",
    "{% set s = 'x' * 100000 %}{{ range(1000)|join(s) }}",
    "{% set s = '\n' * 100000 %}{{ s|indent('x' * 1000, blank=True) }}",
    "{% set l = [1] * 100000 %}{% set _ = l.extend(l) %}{% set _ = l.extend(l) %}",
])
def test_strings_and_lists_built_by_a_template_are_bounded(html: str) -> None:
    assert "[templates] max_part_bytes = 200000" in str(render_error(html))


def test_output_over_the_part_limit_names_the_line() -> None:
    err = render_error("<p>intro</p>\n\n{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}")
    assert err.line == 3
    assert "output over the limit ([templates] max_part_bytes = 200000 bytes)" in str(err)


def test_output_captured_in_set_blocks_and_macros_counts_too() -> None:
    err = render_error("{% set s %}{% for i in range(1000) %}{% for j in range(1000) %}"
                       "{{ 'x' * 100 }}{% endfor %}{% endfor %}{% endset %}{{ s|length }}")
    assert "counting output captured by macros and set/filter blocks" in str(err)


def test_subject_part_is_limited_too() -> None:
    template = compile_template("hostile", "{{ 'x' * 10**8 }}", "<p>ok</p>", None)
    with pytest.raises(TemplateRenderError) as info:
        template.render(CONTEXT)
    assert info.value.part == "subject"


def test_an_ordinary_template_renders_as_before() -> None:
    html = ("<p>Ciao {{ contact.nome }}, ordine {{ 'N. %08d'|format(12345678) }} "
            "{{ 'Fattura 123456789: {}'.format('ok') }}</p>\n<ul>{% for i in range(3) %}"
            "<li>{{ loop.index }}/{{ loop.length }}{% if loop.last %}.{% endif %}</li>"
            "{% endfor %}</ul>{{ range(3)|reverse|join(',') }} {{ lipsum(2, html=False)|length > 0 }}"
            "{% macro riga(x) %}<b>{{ x ~ '!' }}</b>{% endmacro %}{{ riga('a') }}")
    rendered = compile_template("ok", "Ciao {{ contact.nome }}", html, None).render(CONTEXT)
    assert "ordine N. 12345678 Fattura 123456789: ok" in rendered.html
    assert "<li>1/3</li><li>2/3</li><li>3/3.</li>" in rendered.html
    assert "2,1,0 True<b>a!</b>" in rendered.html


def test_limits_come_from_the_templates_table(tmp_path: Path) -> None:
    config = tmp_path / "campaigns.toml"
    config.write_text("[templates]\nmax_render_s = 1.5\nmax_part_bytes = 5000\nmax_range = 50\n")
    settings = load_settings({"CAMPAIGNS_CONFIG": str(config),
                              "CAMPAIGNS_DATA_DIR": str(tmp_path / "d")})
    assert (settings.templates.max_part_bytes, settings.templates.max_range) == (5000, 50)
    assert current_limits() == RenderLimits(1.5, 5000, 50)
    assert "max_range = 50" in str(render_error("{% for i in range(51) %}{% endfor %}"))
    assert "max_part_bytes = 5000" in str(render_error("{{ 'x' * 5001 }}"))


def test_launch_refuses_a_template_over_a_limit(project) -> None:  # type: ignore[no-untyped-def]
    project.extra_toml = "[templates]\nmax_render_s = 0.5\n"
    project.write_config()
    html = ("<p>Ciao {{ contact.first_name }}</p>\n"
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}\n")
    make_campaign(project, "slow", 3, html=html)
    started = time.monotonic()
    proc = project.cli("launch", "slow", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "template 'slow-tpl' (html, line 2)" in proc.stderr
    assert "[templates] max_render_s = 0.5" in proc.stderr
    assert time.monotonic() - started < 25
    assert project.status("slow")["status"] == "draft"
