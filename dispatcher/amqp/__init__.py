"""RabbitMQ: the topology as data, the consumer loop, confirmed publishing."""
