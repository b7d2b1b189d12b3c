"""Loan-application risk features: LendingClub rejected-loan applications, raw -> cleaned ->
versioned risk-score features (MA50, MA100, EMA50), batch for 2007 and streaming from 2008."""
