"""dispatcher: turns CloudEvents published to RabbitMQ into notifications people receive."""

__version__ = "0.1.0"
