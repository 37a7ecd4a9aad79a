# The official Airflow image with airflow-carbon installed; docker-compose.yaml builds it (`build: .`).
#
# Tags are apache/airflow:<airflow version>-python<X.Y>. Keep the version equal to the Makefile's
# AIRFLOW_VERSION (tests/deploy checks it); the base image sets ${AIRFLOW_VERSION} to it.
FROM apache/airflow:3.3.2-python3.11

# pip builds the package in place (egg-info), so its directory belongs to the image's `airflow` user.
USER root
RUN mkdir /tmp/airflow-carbon && chown airflow:0 /tmp/airflow-carbon
USER airflow

# Only what the package needs to build (.dockerignore keeps .venv, .git, out/ and build/ out of the context).
COPY --chown=airflow:0 setup.cfg pyproject.toml README.md /tmp/airflow-carbon/
COPY --chown=airflow:0 airflow_carbon /tmp/airflow-carbon/airflow_carbon

# As the image's docs say for extending it: name apache-airflow at the image's own version, so pip cannot
# upgrade or downgrade it, and install within the constraints the image was built with.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/tmp/airflow-carbon[celery,plots,energy,examples]" \
        --constraint "${HOME}/constraints.txt" \
    && rm -rf /tmp/airflow-carbon
