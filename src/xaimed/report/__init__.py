"""Report: tables and their writers, figure style, one figures module per stage."""
