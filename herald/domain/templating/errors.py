"""Errors of the template language: syntax (found when a template is compiled) and limits (at render)."""

from __future__ import annotations

from herald.domain.errors import RuleViolated, ValidationFailed


class TemplateSyntaxError(ValidationFailed):
    """The template text is not valid Altcraft template language; carries the 1-based line and column."""

    def __init__(self, message: str, path: str = "", *, line: int = 0, column: int = 0) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {message}" if line else message, path)

    def at(self, prefix: str) -> TemplateSyntaxError:
        """The same error with its path nested under `prefix`, keeping the position."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return TemplateSyntaxError(self.message, path, line=self.line, column=self.column)


class TemplateRenderError(RuleViolated):
    """A render hit a safety limit (loop iterations, output size, fragment nesting)."""
