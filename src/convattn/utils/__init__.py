"""Small framework-independent helpers shared by models, the converter and the engine."""
