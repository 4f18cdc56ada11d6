import { Module } from '@nestjs/common';
import { MeController } from './me.controller.js';

/** Principals, the guard's decorators and `/api/v1/me`; strategies will register here. */
@Module({ controllers: [MeController] })
export class AuthModule {}
