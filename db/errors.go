package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is what a query returns when the row it looks for does not exist.
var ErrNotFound = errors.New("not found")

// ErrUniqueViolation reports an insert or update that collided with a unique key.
var ErrUniqueViolation = errors.New("unique violation")

// ErrUnavailable reports that the database could not be reached or refused to serve:
// the connection failed or broke, the server is shutting down or out of resources. The
// request may succeed when retried later.
var ErrUnavailable = errors.New("database unavailable")

// DataError is PostgreSQL refusing a value: a data exception (class 22, such as a NUL
// character or invalid UTF-8 in text), an integrity constraint other than a unique key
// (class 23) or a program limit (class 54, such as a value too large to index). It is
// caused by the data sent, not by the server, so it is the client's to fix.
type DataError struct {
	// Code is the SQLSTATE.
	Code string
	// Message is PostgreSQL's primary message, which names the problem with the value
	// (never the connection's host, user or port).
	Message string
	err     error
}

func (e *DataError) Error() string { return e.err.Error() }

// Unwrap returns the driver's error.
func (e *DataError) Unwrap() error { return e.err }

// Translate maps a driver error onto the package's sentinels, once: ErrNotFound,
// ErrUniqueViolation, *DataError and ErrUnavailable. The driver's error stays in the chain
// for logging. Errors already translated, context errors and everything else pass
// through unchanged. Every query run through Conn or a transaction of InTx is translated,
// so code outside this package never inspects driver errors.
func Translate(err error) error {
	if err == nil || isTranslated(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch class := pgErr.Code[:2]; {
		case pgErr.Code == "23505": // unique_violation
			return fmt.Errorf("%w: %w", ErrUniqueViolation, err)
		case class == "22" || class == "23" || class == "54":
			return &DataError{Code: pgErr.Code, Message: pgErr.Message, err: err}
		case unavailableCode(pgErr.Code):
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller gave up; the database may be fine
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// unavailableCode reports the SQLSTATEs of a server that cannot serve now: connection
// exceptions (08), insufficient resources (53), shutdown and crash (57P01-57P03), and
// the failures of logging in (a dropped database, revoked access), which surface when
// the pool opens a new connection.
func unavailableCode(code string) bool {
	switch code[:2] {
	case "08", "53":
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03", "3D000", "28000", "28P01", "42501":
		return true
	}
	return false
}

func isTranslated(err error) bool {
	var dataErr *DataError
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrUniqueViolation) || errors.Is(err, ErrUnavailable) || errors.As(err, &dataErr)
}

// IsRetryable reports a serialization failure or deadlock, after which the whole
// transaction can safely be run again.
func IsRetryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
