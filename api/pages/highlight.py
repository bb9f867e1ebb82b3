"""YAML as highlighted HTML, by Pygments: ``<span class="…">`` only (no inline styles, so
the pages' Content-Security-Policy holds); ``static/highlight.css`` colours the classes."""

from __future__ import annotations

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import YamlLexer

CSS_CLASS = "hl"
_FORMATTER = HtmlFormatter(cssclass=CSS_CLASS, linenos=False, wrapcode=True)
_LEXER = YamlLexer()


def highlight_yaml(source: str) -> Markup:
    """Escaped and coloured: Pygments escapes the text of every token."""
    return Markup(highlight(source, _LEXER, _FORMATTER))


def stylesheet() -> str:
    """The CSS for the classes above (``static/highlight.css`` is made from it)."""
    return str(_FORMATTER.get_style_defs(f".{CSS_CLASS}"))
