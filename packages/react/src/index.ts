/**
 * @herenow/react: presence hooks and the faces at the top of the page.
 *
 * ```tsx
 * import "@herenow/react/styles.css";
 * <PresenceProvider room="design-review" user={{ name: "Ada" }}>
 *   <AvatarStack max={5} />
 * </PresenceProvider>
 * ```
 */
export {
  PresenceProvider,
  shallowEqual,
  useActivity,
  useFollow,
  useOthers,
  usePresence,
  usePresenceAt,
  usePresenceClient,
  usePresenceSelector,
  usePublishLocation,
  useRecentlyLeft,
  useSelf,
  useStatus,
  useTabStatus,
  useTyping,
  useUserStatus,
  type FollowApi,
  type PresenceProviderProps,
  type TypingApi,
  type UserStatusInfo,
} from "./hooks";
export { AvatarStack, DEFAULT_PALETTE, UserAvatar, type AvatarStackProps, type UserAvatarProps } from "./AvatarStack";
export { ActivityLog, type ActivityLogProps } from "./ActivityLog";
export { TypingIndicator, type TypingIndicatorProps } from "./TypingIndicator";
export { FollowBanner, type FollowBannerProps } from "./FollowBanner";
export { Follower, SCROLL_KEYS, type FollowHandler, type FollowState, type FollowerOptions } from "./follow";
export {
  agoPhrase,
  displayName,
  durationPhrase,
  faceLabel,
  isAway,
  joinNames,
  stackLabel,
  typingPhrase,
  type FaceDescription,
} from "./names";
export { usePrefersReducedMotion } from "./motion";
