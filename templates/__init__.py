"""Jinja2 templates (*.j2) and the static C headers copied into every generated package."""
