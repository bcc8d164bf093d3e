"""Azure ML scoring scripts: the handler, the AMLRequest/AMLResponse module scripts import, and
their API documents."""

from .handler import AzureMLScriptHandler

__all__ = ["AzureMLScriptHandler"]
