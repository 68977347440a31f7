"""Activities: the side effects, one module per system touched."""

from activities.sample import bp as sample_bp

blueprints = [sample_bp]
