"""hyperserve's runtime: transport, codecs, scheduler, repository and the CLI."""

__version__ = "0.1.0"
