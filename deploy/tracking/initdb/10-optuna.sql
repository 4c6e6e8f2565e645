-- The second database of the tracking server's PostgreSQL: shared Optuna studies.
CREATE DATABASE optuna;
