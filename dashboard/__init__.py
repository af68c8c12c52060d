"""The Streamlit dashboard: pages draw, queries read, charts build figures."""
