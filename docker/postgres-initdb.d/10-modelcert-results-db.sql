-- Second database for the modelcert certification results, separate from the Airflow metadata database
-- (POSTGRES_DB=airflow). Runs on an empty data volume only; airflow-init also creates it if it is missing.
CREATE DATABASE modelcert OWNER airflow;
