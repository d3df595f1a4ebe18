"""BaseModel: picks the model a Trainer warm-starts from (the served one, else the imported one)."""
