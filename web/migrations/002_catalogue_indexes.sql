-- 002: indexes for the catalogue filters and sort orders (all on available cars).

CREATE INDEX cars_available_created_idx ON cars (created_at DESC, id DESC) WHERE status = 'available';
CREATE INDEX cars_available_price_idx   ON cars (price, id)               WHERE status = 'available';
CREATE INDEX cars_available_year_idx    ON cars (year, id)                WHERE status = 'available';
CREATE INDEX cars_available_mileage_idx ON cars (mileage_km, id)          WHERE status = 'available';
CREATE INDEX cars_model_idx             ON cars (model_id);
CREATE INDEX models_make_idx            ON models (make_id);
CREATE INDEX makes_lower_name_idx       ON makes (lower(name));
CREATE INDEX models_lower_name_idx      ON models (lower(name));
