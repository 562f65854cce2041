"""The pure core: request models, parameters, scripts, result encoding. No IO."""
