"""Task heads a fine-tuned model exports together with its backbone (rebuilt from their spec)."""

from ptft.heads.ctc_head import CTCHead

__all__ = ["CTCHead"]
