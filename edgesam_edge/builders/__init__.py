"""Build layer: code that makes device artifacts (engines, default bundles) from exported models."""
