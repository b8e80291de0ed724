"""The contest domain (challenges, teams, submissions, scoring) and the public Streamlit app."""
