"""Templates: compile once, render per contact, errors that say where, html_to_text."""
from __future__ import annotations

import dataclasses

import pytest

from campaigns.errors import InputError, TemplateRenderError
from campaigns.content.rendering import (CompiledTemplate, Rendered, build_context, compile_template,
                                 html_to_text)

NEWSLETTER = """<!DOCTYPE html>
<html lang="it">
<head>
  <meta charset="utf-8">
  <title>{{ campaign.name }}</title>
  <style>body { font-family: sans-serif; } {% if dark %}body { background: #000 }{% endif %}</style>
  <script>var x = "{{ contact.email }}";</script>
</head>
<body>
<span style="display:none;font-size:1px">Anteprima nascosta&zwnj;&nbsp;</span>
<table role="presentation" width="100%"><tr><td>
  <h1>Ciao {{ contact.first_name }}!</h1>
  <p>Le offerte di   Natale per
     {{ contact.city }} &mdash; sconti fino al <b>50%</b>. Vedi il
     <a href="https://shop.example.it/natale?e={{ contact.email|urlencode }}&amp;utm=nl">catalogo</a>.</p>
  {% if contact.vip == "yes" %}
  <p>Come cliente VIP hai accesso anticipato.</p>
  {% endif %}
  <h2>Prodotti</h2>
  <ul>
    {% for item in items %}
    <li>{{ item.name }} a {{ item.price }}&nbsp;&euro;</li>
    {% endfor %}
  </ul>
  <p>Visita <a href="https://www.example.it">https://www.example.it</a><br>
  o scrivici a <a href="mailto:info@example.it">info@example.it</a></p>
  <p>{{ a<b }} e parentesi letterali &#123;&#123; qui</p>
  <p style="font-size:11px">Non vuoi più ricevere? <a href="{{ unsubscribe_url }}">Disiscriviti</a>.</p>
</td></tr></table>
</body>
</html>
"""


def context(vip: str = "yes", **extra: object) -> dict[str, object]:
    return build_context(
        email="niccolo@example.it",
        attributes={"first_name": "Niccolò", "city": "Forlì", "vip": vip,
                    "Codice Cliente": "C-42"},
        campaign_name="Natale 2026",
        unsubscribe_url="https://u.example.it/u/abc?t=1&x=2",
        extra={"items": [{"name": "Panettone", "price": 12}, {"name": "Torrone", "price": 7}],
               "dark": False, "a": 1, "b": 2, **extra})


# -- rendering ----------------------------------------------------------------------------

def test_renders_all_parts_with_contact_campaign_and_unsubscribe() -> None:
    template = compile_template(
        "natale", "{{ contact.first_name }}, offerte per {{ contact.city }}",
        '<p>{{ campaign.name }}: {{ contact["Codice Cliente"] }} '
        '<a href="{{ unsubscribe_url }}">esci</a></p>',
        "Ciao {{ contact.first_name }} ({{ contact.email }}) {{ unsubscribe_url }}")
    rendered = template.render(context())
    assert isinstance(template, CompiledTemplate) and template.name == "natale"
    assert rendered == Rendered(
        subject="Niccolò, offerte per Forlì",
        html='<p>Natale 2026: C-42 <a href="https://u.example.it/u/abc?t=1&amp;x=2">esci</a></p>',
        text="Ciao Niccolò (niccolo@example.it) https://u.example.it/u/abc?t=1&x=2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rendered.subject = "x"  # type: ignore[misc]


def test_html_is_autoescaped_subject_and_text_are_not() -> None:
    template = compile_template("t", "{{ contact.first_name }}", "<p>{{ contact.first_name }}</p>",
                                "{{ contact.first_name }}")
    ctx = build_context(email="a@example.it", attributes={"first_name": "<b>Tom & Jerry</b>"},
                        campaign_name="c", unsubscribe_url="u")
    rendered = template.render(ctx)
    assert rendered.html == "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    assert rendered.subject == rendered.text == "<b>Tom & Jerry</b>"


@pytest.mark.parametrize("value, expected", [
    ("\r\nBcc: x@y", "Bcc: x@y"),
    ("Ciao\r\nBcc: victim@example.com", "Ciao Bcc: victim@example.com"),
    ("Ciao \n\n  Mario", "Ciao Mario"),
    ("a\tb\x00c\x0bd\u2028e\x85f", "a b c d e f"),
    ("  spazi  interni  ", "spazi  interni"),
])
def test_subject_is_one_line_whatever_the_data(value: str, expected: str) -> None:
    template = compile_template("t", "{{ extra_subject }}", "x", "x")
    assert template.render(context(extra_subject=value)).subject == expected


def test_a_compiled_template_is_reused_for_many_contacts() -> None:
    template = compile_template("t", "Ciao {{ contact.first_name }}", "<p>{{ contact.email }}</p>", None)
    for i in range(50):
        ctx = build_context(email=f"c{i}@example.it", attributes={"first_name": f"N{i}"},
                            campaign_name="c", unsubscribe_url="u")
        rendered = template.render(ctx)
        assert (rendered.subject, rendered.html, rendered.text) == (
            f"Ciao N{i}", f"<p>c{i}@example.it</p>", f"c{i}@example.it")


def test_missing_columns_can_be_tested_or_defaulted() -> None:
    template = compile_template(
        "t", "{{ contact.nickname | default('amico') }}",
        "{% if contact.nickname is defined %}x{% else %}none{% endif %}", "x")
    rendered = template.render(context())
    assert (rendered.subject, rendered.html) == ("amico", "none")


def test_a_column_named_like_a_dict_method_reads_the_column() -> None:
    template = compile_template("t", "{{ contact.items }} {{ contact.keys }}", "x", "x")
    ctx = build_context(email="a@example.it", attributes={"items": "3", "keys": "k"},
                        campaign_name="c", unsubscribe_url="u")
    assert template.render(ctx).subject == "3 k"


def test_extra_may_not_shadow_the_standard_variables() -> None:
    with pytest.raises(InputError) as err:
        build_context(email="a@example.it", attributes={}, campaign_name="c",
                      unsubscribe_url="u", extra={"contact": {}})
    assert err.value.field == "extra"


# -- errors ------------------------------------------------------------------------------

def test_undefined_column_names_template_part_line_and_variable() -> None:
    html = "<html>\n<body>\n<p>Ciao {{ contact.first_name }}</p>\n</body>\n</html>"
    template = compile_template("newsletter", "Offerte", html, "Ciao")
    ctx = build_context(email="a@example.it", attributes={"city": "Milano"},
                        campaign_name="c", unsubscribe_url="u")
    with pytest.raises(TemplateRenderError) as err:
        template.render(ctx)
    error = err.value
    assert (error.template, error.part, error.line, error.variable) == (
        "newsletter", "html", 3, "contact.first_name")
    assert "newsletter" in str(error) and "line 3" in str(error)
    assert "city" in str(error)  # says which columns the list has


@pytest.mark.parametrize("parts, part, line, variable", [
    (("{{ contact.nope }}", "x", "x"), "subject", 1, "contact.nope"),
    (("s", "x", "a\nb\n\n{{ missing_name }}"), "text", 4, "missing_name"),
    (("s", "x\n{{ contact['Colonna Mancante'] }}", "x"), "html", 2, "contact['Colonna Mancante']"),
    (("s", "{% for i in [1] %}\n\n{{ campaign.title }}{% endfor %}", "x"), "html", 3,
     "campaign.title"),
    (("s", "<p>\n{% if contact.missing %}x{% endif %}</p>", "x"), "html", 2, "contact.missing"),
])
def test_undefined_variable_errors(parts: tuple[str, str, str], part: str, line: int,
                                   variable: str) -> None:
    template = compile_template("t", *parts)
    with pytest.raises(TemplateRenderError) as err:
        template.render(context())
    assert (err.value.part, err.value.line, err.value.variable) == (part, line, variable)


def test_undefined_variable_shared_by_html_and_derived_text_is_reported_in_html() -> None:
    template = compile_template("t", "s", '<p>\nx <a href="{{ nope }}">y</a></p>', None)
    with pytest.raises(TemplateRenderError) as err:
        template.render(context())
    assert (err.value.part, err.value.variable) == ("html", "nope")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ contact.email.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ items.__class__.__subclasses__() }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
])
def test_sandbox_violations_are_rejected(source: str) -> None:
    template = compile_template("t", "s", "<p>ok</p>\n" + source, "x")
    with pytest.raises(TemplateRenderError) as err:
        template.render(context())
    assert "not allowed in templates" in str(err.value)
    assert (err.value.part, err.value.line) == ("html", 2)


def test_other_runtime_errors_name_template_part_and_line() -> None:
    template = compile_template("t", "s", "x", "a\n{{ 1 // 0 }}")
    with pytest.raises(TemplateRenderError) as err:
        template.render(context())
    assert (err.value.template, err.value.part, err.value.line) == ("t", "text", 2)
    assert "ZeroDivisionError" in str(err.value)


@pytest.mark.parametrize("parts, part, line", [
    (("{{ contact.first_name", "x", "x"), "subject", 1),
    (("s", "<p>\n\n<b>{{ x + }}</b>\n</p>", "x"), "html", 3),
    (("s", "x", "a\n{% for %}"), "text", 2),
])
def test_syntax_errors_name_part_and_line(parts: tuple[str, str, str], part: str,
                                          line: int) -> None:
    with pytest.raises(TemplateRenderError) as err:
        compile_template("broken", *parts)
    assert (err.value.template, err.value.part, err.value.line) == ("broken", part, line)


# -- html_to_text --------------------------------------------------------------------------

def test_html_to_text_on_a_newsletter_template_keeps_jinja_intact() -> None:
    text = html_to_text(NEWSLETTER)
    assert text == (
        '{% if dark %}{% endif %}Ciao {{ contact.first_name }}!\n'
        '\n'
        'Le offerte di Natale per {{ contact.city }} — sconti fino al 50%. Vedi il catalogo '
        '(https://shop.example.it/natale?e={{ contact.email|urlencode }}&utm=nl).\n'
        '\n'
        '{% if contact.vip == "yes" %}Come cliente VIP hai accesso anticipato.\n'
        '\n'
        '{% endif %}Prodotti\n'
        '\n'
        '{% for item in items %}- {{ item.name }} a {{ item.price }} €\n'
        '{% endfor %}\n'
        'Visita https://www.example.it\n'
        'o scrivici a info@example.it\n'
        '\n'
        '{{ a<b }} e parentesi letterali {{ "{" }}{ qui\n'
        '\n'
        'Non vuoi più ricevere? Disiscriviti ({{ unsubscribe_url }}).')


def test_derived_text_part_renders_cleanly() -> None:
    template = compile_template("natale", "s", NEWSLETTER, None)
    assert template.text_generated
    expected = (
        "Ciao Niccolò!\n\n"
        "Le offerte di Natale per Forlì — sconti fino al 50%. Vedi il catalogo "
        "(https://shop.example.it/natale?e=niccolo%40example.it&utm=nl).\n\n"
        "{vip}"
        "Prodotti\n\n"
        "- Panettone a 12 €\n"
        "- Torrone a 7 €\n\n"
        "Visita https://www.example.it\n"
        "o scrivici a info@example.it\n\n"
        "True e parentesi letterali {{{{ qui\n\n"
        "Non vuoi più ricevere? Disiscriviti (https://u.example.it/u/abc?t=1&x=2).")
    assert template.render(context("yes")).text == expected.format(
        vip="Come cliente VIP hai accesso anticipato.\n\n")
    assert template.render(context("no")).text == expected.format(vip="")


@pytest.mark.parametrize("html, text", [
    ("<p>One</p><p>Two</p>", "One\n\nTwo"),
    ("<div>a</div><div>b</div>", "a\nb"),
    ("a<br>b<br><br>c", "a\nb\n\nc"),
    ("<h1>Title</h1>body", "Title\n\nbody"),
    ("<p>x <a href='https://e.it/'>label</a></p>", "x label (https://e.it/)"),
    ("<a href='https://e.it/'>https://e.it/</a>", "https://e.it/"),
    ("<a href='https://e.it/'><img src='l.png' alt=''></a>", "https://e.it/"),
    ("<a href='#top'>top</a>", "top"),
    ("<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul>", "- a\n- b\n  - c"),
    ("<p>&lt;tag&gt; &amp; &quot;q&quot; &egrave;</p>", '<tag> & "q" è'),
    ("<p>  lots \n\t of   space  </p>", "lots of space"),
    ("<head><title>T</title></head><body><script>x()</script><style>p{}</style>ok</body>", "ok"),
    ("<p>a</p><!-- comment --><p>b</p>", "a\n\nb"),
    ("<pre>keep\n  this</pre>", "keep\n  this"),
    ("<p>x</p><hr><p>y</p>", "x\n\n--------------------\n\ny"),
    ("<div {% if x %}class='a'{% endif %}>t</div>", "{% if x %}{% endif %}t"),
    ("<p>{%- if x -%} y {{- z -}}{% endif %}</p>", "{% if x %}y {{ z }}{% endif %}"),
    ("<p>{# note #}a</p>", "{# note #}a"),
    ("<p>{% raw %}<b>{{ x }}</b>{% endraw %}</p>", "{% raw %}<b>{{ x }}</b>{% endraw %}"),
    ("<p>&#123;% not jinja %&#125;</p>", '{{ "{" }}% not jinja %}'),
])
def test_html_to_text_cases(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_explicit_text_part_is_used_as_given() -> None:
    template = compile_template("t", "s", "<p>html</p>", "plain {{ contact.email }}\n\n\nend")
    assert not template.text_generated
    assert template.render(context()).text == "plain niccolo@example.it\n\n\nend"
