"""nats-py's deprecated ``nats.aio.errors`` names (``ErrTimeout``...), as aliases of the
``nats.errors`` classes, so that ``except ErrTimeout`` catches what INSANE raises."""

from insane import errors

NatsError = errors.Error
ErrConnectionClosed = errors.ConnectionClosedError
ErrDrainTimeout = errors.DrainTimeoutError
ErrInvalidUserCredentials = errors.InvalidUserCredentialsError
ErrInvalidCallbackType = errors.InvalidCallbackTypeError
ErrConnectionReconnecting = errors.ConnectionReconnectingError
ErrConnectionDraining = errors.ConnectionDrainingError
ErrMaxPayload = errors.MaxPayloadError
ErrStaleConnection = errors.StaleConnectionError
ErrJsonParse = errors.JsonParseError
ErrSecureConnRequired = errors.SecureConnRequiredError
ErrSecureConnWanted = errors.SecureConnWantedError
ErrSecureConnFailed = errors.SecureConnFailedError
ErrBadSubscription = errors.BadSubscriptionError
ErrBadSubject = errors.BadSubjectError
ErrSlowConsumer = errors.SlowConsumerError
ErrTimeout = errors.TimeoutError
ErrBadTimeout = errors.BadTimeoutError
ErrAuthorization = errors.AuthorizationError
ErrNoServers = errors.NoServersError
