"""Activities: the side effects, one module per system touched."""

from activities.app import bp as app_bp
from activities.cache import bp as cache_bp
from activities.compute import bp as compute_bp
from activities.database import bp as database_bp
from activities.dependencies import bp as dependencies_bp
from activities.gates import bp as gates_bp
from activities.incident import bp as incident_bp
from activities.isolation import bp as isolation_bp
from activities.recovery_point import bp as recovery_point_bp
from activities.release import bp as release_bp
from activities.routing import bp as routing_bp
from activities.sample import bp as sample_bp
from activities.traffic import bp as traffic_bp
from activities.validation import bp as validation_bp
from activities.watch import bp as watch_bp

blueprints = [
    incident_bp,
    gates_bp,
    database_bp,
    compute_bp,
    traffic_bp,
    cache_bp,
    release_bp,
    isolation_bp,
    dependencies_bp,
    validation_bp,
    watch_bp,
    sample_bp,
    recovery_point_bp,
    app_bp,
    routing_bp,
]
