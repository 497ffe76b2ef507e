"""Cross-fact analysis shared by rules: pure functions over fact models."""
