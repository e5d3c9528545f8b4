"""Small shared package: data loading (`data`), metrics (`metrics`), runtime glue (`runtime`) and
atomic checkpoints (`checkpoint`). Model code lives in each project, never here."""
