"""Resources: every endpoint, path and secret the platform uses, configured from the environment."""

from resources.alerts import Alert, AlertsResource
from resources.kafka import KafkaResource
from resources.lake import LakeResource
from resources.landing import LandingResource
from resources.postgres import PostgresResource
from resources.pseudonymize import PseudonymizerResource
from resources.warehouse import WarehouseResource

__all__ = [
    "Alert",
    "AlertsResource",
    "KafkaResource",
    "LakeResource",
    "LandingResource",
    "PostgresResource",
    "PseudonymizerResource",
    "WarehouseResource",
]
