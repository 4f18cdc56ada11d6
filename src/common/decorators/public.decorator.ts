import { SetMetadata } from '@nestjs/common';

/** Metadata key read by the global auth guard. */
export const IS_PUBLIC_KEY = 'gatehouse:isPublic';

/**
 * Marks a route (or controller) as reachable without credentials. Everything else is denied
 * by default; keep this to health, readiness and well-known metadata.
 */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(IS_PUBLIC_KEY, true);
