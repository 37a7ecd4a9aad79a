"""Carbon-aware scheduling for Apache Airflow 3: defer tasks that can wait until the grid is cleaner."""

__version__ = "0.1.0"
