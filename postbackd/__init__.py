"""postbackd: order-status postbacks (webhooks and email) for print service providers."""

__version__ = "0.1.0"
