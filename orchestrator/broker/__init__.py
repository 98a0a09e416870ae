"""The Broker port and its adapters: the durable in-process broker (default) and RabbitMQ."""
