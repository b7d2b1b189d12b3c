"""Resources: every endpoint, path and secret the platform uses, configured from the environment."""

from resources.kafka import KafkaResource
from resources.lake import LakeResource
from resources.warehouse import WarehouseResource

__all__ = ["KafkaResource", "LakeResource", "WarehouseResource"]
